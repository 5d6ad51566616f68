//! Connections: the handshake, authentication, request dispatch and response framing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::cluster::{Records, Served};
use crate::db::{self, CqlError, Db, Event, ExecOptions, Outcome, ResultSet, Routing};
use crate::frame::*;
use crate::wire::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Password,
}

pub struct Config {
    pub auth: AuthMode,
    pub users: HashMap<String, String>,
    pub quiet: bool,
}

/// Which node a connection was accepted by, and what it reports to.
pub struct Serving {
    /// The index of the node in `Db::nodes`.
    pub node: usize,
    /// Where served requests are recorded, when they are.
    pub records: Option<Arc<Records>>,
    /// Turns true when the node stops: the connection then closes.
    pub stop: watch::Receiver<bool>,
}

/// Returns once `stop` turns true (or its sender is gone).
pub async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// REGISTER event types, as bits of `Conn::registered`.
const EVENT_SCHEMA: u8 = 0x01;
const EVENT_STATUS: u8 = 0x02;
const EVENT_TOPOLOGY: u8 = 0x04;

/// What the reader hands to the writer.
enum Out {
    /// A complete envelope (body already compressed for v4).
    Envelope(Vec<u8>),
    /// From now on, envelopes go into v5 segments.
    StartSegments { lz4: bool },
    /// Flush and close the connection.
    Close,
}

const MAX_BUFFERED: usize = MAX_BODY + 64 * 1024;

/// Serves one client connection until it closes, or until the node stops (then it is
/// closed at once, with whatever was not written yet).
pub async fn handle(stream: TcpStream, db: Arc<Db>, cfg: Arc<Config>, serving: Serving) {
    let Serving {
        node,
        records,
        mut stop,
    } = serving;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();

    let writer = tokio::spawn(async move {
        let mut segments: Option<bool> = None;
        let mut out: Vec<u8> = Vec::new();
        let mut pending: Vec<Vec<u8>> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut close = false;
            let mut msgs = vec![first];
            while msgs.len() < 256 {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            for m in msgs {
                match m {
                    Out::Envelope(e) => match segments {
                        None => out.extend_from_slice(&e),
                        Some(_) => pending.push(e),
                    },
                    Out::StartSegments { lz4 } => segments = Some(lz4),
                    Out::Close => close = true,
                }
            }
            if let Some(lz4) = segments {
                if !pending.is_empty() {
                    encode_segments(&mut out, &pending, lz4);
                    pending.clear();
                }
            }
            if !out.is_empty() {
                if wr.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            }
            if close {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut conn = Conn {
        db,
        cfg,
        tx: tx.clone(),
        version: None,
        compression: Compression::None,
        started: false,
        authenticated: false,
        keyspace: None,
        seg_in: None,
        partial: Vec::new(),
        peer: peer.clone(),
        events: None,
        registered: Arc::new(AtomicU8::new(0)),
        node,
        records,
        noted: false,
        user: None,
    };
    let mut stopped = false;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut start = 0usize;
    'outer: loop {
        // Process everything complete in the buffer.
        loop {
            let res = conn.process(&buf[start..]);
            match res {
                Ok(0) => break,
                Ok(n) => start += n,
                Err(Closed) => break 'outer,
            }
        }
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        if buf.len() > MAX_BUFFERED {
            break;
        }
        buf.reserve(64 * 1024);
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = until_stopped(&mut stop) => {
                stopped = true;
                break;
            }
        }
    }
    let _ = tx.send(Out::Close);
    if let Some(h) = conn.events.take() {
        h.abort();
    }
    drop(conn);
    drop(tx);
    if stopped {
        // A node going down does not flush: a client that does not read must not hold it.
        writer.abort();
    }
    let _ = writer.await;
}

struct Conn {
    db: Arc<Db>,
    cfg: Arc<Config>,
    tx: mpsc::UnboundedSender<Out>,
    version: Option<u8>,
    compression: Compression,
    started: bool,
    authenticated: bool,
    keyspace: Option<String>,
    /// Some(lz4) once the client sends v5 segments.
    seg_in: Option<bool>,
    /// Payload of non-self-contained segments carrying one large envelope.
    partial: Vec<u8>,
    peer: String,
    events: Option<tokio::task::JoinHandle<()>>,
    /// The event types REGISTERed (EVENT_* bits), shared with the event task.
    registered: Arc<AtomicU8>,
    /// The index of the node serving the connection in `Db::nodes`.
    node: usize,
    records: Option<Arc<Records>>,
    /// Whether the request being handled has been recorded.
    noted: bool,
    /// The name this connection logged in with (password mode).
    user: Option<String>,
}

impl Conn {
    fn log(&self, msg: &str) {
        if !self.cfg.quiet {
            eprintln!("cql-devserver: {}: {msg}", self.peer);
        }
    }

    /// Consumes one unit (envelope or segment) from `buf`; Ok(0) if incomplete, Err to close.
    fn process(&mut self, buf: &[u8]) -> Result<usize, Closed> {
        if let Some(lz4) = self.seg_in {
            let seg = match parse_segment(buf, lz4) {
                Ok(Parsed::Incomplete) => return Ok(0),
                Ok(Parsed::Done(s, n)) => (s, n),
                Err(e) => return Err(self.fatal(0, &e)),
            };
            let (seg, used) = seg;
            if seg.self_contained {
                if !self.partial.is_empty() {
                    return Err(self.fatal(0, "Self-contained segment received while a multi-segment envelope is incomplete"));
                }
                let mut pos = 0;
                while pos < seg.payload.len() {
                    match parse_envelope(&seg.payload[pos..]) {
                        Ok(Parsed::Done((h, body), n)) => {
                            let body = body.to_vec();
                            pos += n;
                            self.envelope(h, body)?;
                        }
                        Ok(Parsed::Incomplete) => {
                            return Err(
                                self.fatal(0, "Self-contained segment ends inside an envelope")
                            )
                        }
                        Err(e) => return Err(self.frame_error(e)),
                    }
                }
            } else {
                self.partial.extend_from_slice(&seg.payload);
                if self.partial.len() > MAX_BODY + 9 {
                    return Err(self.fatal(0, "Envelope too large"));
                }
                let partial = std::mem::take(&mut self.partial);
                match parse_envelope(&partial) {
                    Ok(Parsed::Done((h, body), n)) => {
                        if n != partial.len() {
                            return Err(
                                self.fatal(0, "Trailing bytes after a multi-segment envelope")
                            );
                        }
                        let body = body.to_vec();
                        self.envelope(h, body)?;
                    }
                    Ok(Parsed::Incomplete) => self.partial = partial,
                    Err(e) => return Err(self.frame_error(e)),
                }
            }
            return Ok(used);
        }
        match parse_envelope(buf) {
            Ok(Parsed::Incomplete) => Ok(0),
            Ok(Parsed::Done((h, body), n)) => {
                let body = body.to_vec();
                self.envelope(h, body)?;
                Ok(n)
            }
            Err(e) => Err(self.frame_error(e)),
        }
    }

    fn frame_error(&mut self, e: FrameError) -> Closed {
        match e {
            FrameError::UnsupportedVersion(vb) => {
                let v = vb & 0x7f;
                let msg = format!(
                    "Invalid or unsupported protocol version ({v}); supported versions are (3/v3, 4/v4, 5/v5)"
                );
                let mut body = Vec::new();
                put_i32(&mut body, db::ERR_PROTOCOL);
                put_string(&mut body, &msg);
                let env = if self.version.is_none() && (v == 1 || v == 2) {
                    let mut e = vec![0x80 | v, 0, 0, OP_ERROR];
                    e.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    e.extend_from_slice(&body);
                    e
                } else if let Some(cur) = self.version {
                    let msg = format!(
                        "Invalid message version. Got {v} but previous messages on this connection had version {cur}"
                    );
                    return self.fatal(0, &msg);
                } else {
                    encode_envelope(5, 0, 0, OP_ERROR, &body)
                };
                self.log(&msg);
                let _ = self.tx.send(Out::Envelope(env));
                Closed
            }
            FrameError::Protocol(m) => self.fatal(0, &m),
        }
    }

    /// Sends ERROR 0x000A; the connection then closes.
    fn fatal(&mut self, stream: i16, msg: &str) -> Closed {
        self.log(&format!("protocol error: {msg}"));
        let v = self.version.unwrap_or(5);
        let e = CqlError::new(db::ERR_PROTOCOL, msg);
        let _ = self.tx.send(Out::Envelope(self.frame(
            v,
            0,
            stream,
            OP_ERROR,
            &error_body(&e),
        )));
        Closed
    }

    /// Builds an outgoing envelope, compressing the body when v4 compression is on.
    fn frame(&self, version: u8, mut flags: u8, stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
        if self.compression != Compression::None && version < 5 {
            flags |= FLAG_COMPRESSION;
            let z = compress_body(self.compression, body);
            return encode_envelope(version, flags, stream, opcode, &z);
        }
        encode_envelope(version, flags, stream, opcode, body)
    }

    fn send(&self, flags: u8, stream: i16, opcode: u8, body: &[u8]) {
        let v = self.version.unwrap_or(5);
        let _ = self
            .tx
            .send(Out::Envelope(self.frame(v, flags, stream, opcode, body)));
    }

    fn send_error(&self, stream: i16, e: &CqlError) {
        self.send(0, stream, OP_ERROR, &error_body(e));
    }

    fn envelope(&mut self, h: Header, body: Vec<u8>) -> Result<(), Closed> {
        let v = h.version();
        match self.version {
            None => self.version = Some(v),
            Some(cur) if cur != v => {
                let msg = format!(
                    "Invalid message version. Got {v} but previous messages on this connection had version {cur}"
                );
                return Err(self.fatal(h.stream, &msg));
            }
            _ => {}
        }
        let body = if h.flags & FLAG_COMPRESSION != 0 {
            if v >= 5 || self.compression == Compression::None {
                return Err(self.fatal(
                    h.stream,
                    "Received a compressed frame but no compression was negotiated",
                ));
            }
            match decompress_body(self.compression, &body) {
                Ok(b) => b,
                Err(e) => {
                    return Err(self.fatal(
                        h.stream,
                        &format!("Unable to decompress the frame body: {e}"),
                    ));
                }
            }
        } else {
            body
        };
        self.noted = false;
        let res = self.request(&h, &body);
        if !self.noted {
            self.note(h.opcode, Routing::default());
        }
        match res {
            Ok(()) => Ok(()),
            Err(Fail::Error(e)) => {
                self.send_error(h.stream, &e);
                Ok(())
            }
            Err(Fail::Fatal(m)) => Err(self.fatal(h.stream, &m)),
        }
    }

    /// Records the request being handled as served (before it is answered, so that a
    /// client that has its answer finds it in the record), once.
    fn note(&mut self, opcode: u8, routing: Routing) {
        if self.noted {
            return;
        }
        self.noted = true;
        let Some(records) = &self.records else {
            return;
        };
        let Some(node) = self.db.nodes.get(self.node) else {
            return;
        };
        let token = routing
            .key
            .as_deref()
            .map(|k| crate::token::token(&crate::token::partition_key(k)));
        let owner = token
            .and_then(|t| self.db.owner(t))
            .and_then(|i| self.db.nodes.get(i))
            .map(|n| std::net::SocketAddr::new(n.address, n.native_port));
        records.served(Served {
            node: std::net::SocketAddr::new(node.address, node.native_port),
            client: self.peer.clone(),
            opcode: opcode_name(opcode),
            table: routing.table,
            token,
            owner,
            user: self.user.clone(),
        });
    }

    /// The connection logged in as `user`: its record and its requests' records from this
    /// one on (the AUTH_RESPONSE that logged in included) name it.
    fn logged_in(&mut self, user: String) {
        if let (Some(records), Some(node)) = (&self.records, self.db.nodes.get(self.node)) {
            let node = std::net::SocketAddr::new(node.address, node.native_port);
            records.logged_in(node, &self.peer, &user);
        }
        self.user = Some(user);
    }

    /// What a statement addresses, computed only when requests are recorded.
    fn routing(
        &self,
        parsed: &crate::cql::Parsed,
        ks: Option<&str>,
        opts: &ExecOptions,
    ) -> Routing {
        match self.records {
            Some(_) => self.db.routing(parsed, ks, opts),
            None => Routing::default(),
        }
    }

    fn request(&mut self, h: &Header, body: &[u8]) -> Result<(), Fail> {
        let v = h.version();
        // A statement is recorded with what it addresses, a login with the name it logs in
        // with: both once they are known.
        if !matches!(
            h.opcode,
            OP_QUERY | OP_PREPARE | OP_EXECUTE | OP_BATCH | OP_AUTH_RESPONSE
        ) {
            self.note(h.opcode, Routing::default());
        }
        let mut r = Reader::new(body);
        // Custom payload (request flag 0x04) precedes the body: skipped.
        if h.flags & 0x04 != 0 {
            let n = r.u16()?;
            for _ in 0..n {
                r.string()?;
                r.bytes()?;
            }
        }
        let tracing = h.flags & FLAG_TRACING != 0;
        match h.opcode {
            OP_OPTIONS => {
                let mut b = Vec::new();
                put_u16(&mut b, 3);
                put_string(&mut b, "COMPRESSION");
                put_string_list(&mut b, &["snappy", "lz4"]);
                put_string(&mut b, "CQL_VERSION");
                put_string_list(&mut b, &[crate::system::CQL_VERSION]);
                put_string(&mut b, "PROTOCOL_VERSIONS");
                put_string_list(&mut b, &["3/v3", "4/v4", "5/v5"]);
                self.send(0, h.stream, OP_SUPPORTED, &b);
                Ok(())
            }
            OP_STARTUP => {
                if self.started {
                    return Err(Fail::Fatal(
                        "Unexpected message STARTUP, the connection is already started".into(),
                    ));
                }
                let opts = r.string_map()?;
                let comp = match opts.get("COMPRESSION").map(|s| s.to_ascii_lowercase()) {
                    None => Compression::None,
                    Some(c) if c == "lz4" => Compression::Lz4,
                    Some(c) if c == "snappy" && v < 5 => Compression::Snappy,
                    Some(c) => {
                        return Err(Fail::Fatal(format!("Unknown compression algorithm: {c}")))
                    }
                };
                self.started = true;
                if v < 5 {
                    self.compression = comp;
                }
                match self.cfg.auth {
                    AuthMode::None => {
                        self.authenticated = true;
                        self.send(0, h.stream, OP_READY, &[]);
                    }
                    AuthMode::Password => {
                        let mut b = Vec::new();
                        put_string(&mut b, "org.apache.cassandra.auth.PasswordAuthenticator");
                        self.send(0, h.stream, OP_AUTHENTICATE, &b);
                    }
                }
                if v >= 5 {
                    let lz4 = comp == Compression::Lz4;
                    self.seg_in = Some(lz4);
                    let _ = self.tx.send(Out::StartSegments { lz4 });
                }
                Ok(())
            }
            _ if !self.started => Err(Fail::Error(CqlError::new(
                db::ERR_PROTOCOL,
                format!(
                    "Unexpected message {}, expecting STARTUP or OPTIONS",
                    opcode_name(h.opcode)
                ),
            ))),
            OP_AUTH_RESPONSE => {
                if self.cfg.auth == AuthMode::None || self.authenticated {
                    return Err(Fail::Error(CqlError::new(
                        db::ERR_PROTOCOL,
                        "Unexpected message AUTH_RESPONSE",
                    )));
                }
                let token = r.bytes()?.unwrap_or_default();
                let mut parts = token.split(|b| *b == 0);
                let _authzid = parts.next();
                let user = parts.next().map(|u| String::from_utf8_lossy(u).to_string());
                let pass = parts.next().map(|p| String::from_utf8_lossy(p).to_string());
                match (user, pass) {
                    (Some(u), Some(p)) if self.cfg.users.get(&u) == Some(&p) => {
                        self.authenticated = true;
                        self.log(&format!("authenticated as {u}"));
                        self.logged_in(u);
                        self.note(h.opcode, Routing::default());
                        let mut b = Vec::new();
                        put_bytes(&mut b, None);
                        self.send(0, h.stream, OP_AUTH_SUCCESS, &b);
                    }
                    (Some(u), Some(_)) => {
                        self.log(&format!("bad credentials for {u}"));
                        return Err(Fail::Error(CqlError::new(
                            db::ERR_BAD_CREDENTIALS,
                            format!("Provided username {u} and/or password are incorrect"),
                        )));
                    }
                    _ => {
                        return Err(Fail::Error(CqlError::new(
                            db::ERR_BAD_CREDENTIALS,
                            "Authentication failed: malformed SASL PLAIN token",
                        )))
                    }
                }
                Ok(())
            }
            _ if !self.authenticated => Err(Fail::Error(CqlError::new(
                db::ERR_PROTOCOL,
                format!(
                    "Unexpected message {}, expecting SASL response",
                    opcode_name(h.opcode)
                ),
            ))),
            OP_REGISTER => {
                let mut kinds = 0;
                for e in r.string_list()? {
                    kinds |= match e.as_str() {
                        "SCHEMA_CHANGE" => EVENT_SCHEMA,
                        "STATUS_CHANGE" => EVENT_STATUS,
                        "TOPOLOGY_CHANGE" => EVENT_TOPOLOGY,
                        _ => 0,
                    };
                }
                self.registered.fetch_or(kinds, Ordering::Relaxed);
                if kinds != 0 && self.events.is_none() {
                    let mut rx = self.db.events.subscribe();
                    let tx = self.tx.clone();
                    let comp = self.compression;
                    let db = self.db.clone();
                    let node = self.node;
                    let registered = self.registered.clone();
                    tracing_free_event_task(&mut self.events, async move {
                        loop {
                            match rx.recv().await {
                                Ok(e) => {
                                    let kinds = registered.load(Ordering::Relaxed);
                                    let Some(b) = event_body(&db, node, kinds, &e) else {
                                        continue;
                                    };
                                    let env = if comp != Compression::None && v < 5 {
                                        encode_envelope(
                                            v,
                                            FLAG_COMPRESSION,
                                            -1,
                                            OP_EVENT,
                                            &compress_body(comp, &b),
                                        )
                                    } else {
                                        encode_envelope(v, 0, -1, OP_EVENT, &b)
                                    };
                                    if tx.send(Out::Envelope(env)).is_err() {
                                        break;
                                    }
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    continue
                                }
                                Err(_) => break,
                            }
                        }
                    });
                }
                self.send(0, h.stream, OP_READY, &[]);
                Ok(())
            }
            OP_QUERY => {
                let query = r.long_string()?;
                let mut p = read_params(&mut r, v)?;
                p.exec.node = self.node;
                let ks = p.keyspace.clone().or_else(|| self.keyspace.clone());
                let parsed = crate::cql::parse(&query);
                let routing = match &parsed {
                    Ok(parsed) => self.routing(parsed, ks.as_deref(), &p.exec),
                    Err(_) => Routing::default(),
                };
                self.note(h.opcode, routing);
                let res = parsed
                    .map_err(|e| CqlError::syntax(e.0))
                    .and_then(|parsed| self.db.execute(&parsed, ks.as_deref(), &p.exec));
                self.finish(h, v, tracing, res, &p, None)
            }
            OP_PREPARE => {
                let query = r.long_string()?;
                let mut ks = self.keyspace.clone();
                if v >= 5 {
                    let flags = r.i32()?;
                    if flags & 0x01 != 0 {
                        ks = Some(r.string()?);
                    }
                }
                let p = self
                    .db
                    .prepare(&query, ks.as_deref())
                    .map_err(Fail::Error)?;
                // The table only: no values are bound yet.
                let table = self
                    .routing(&p.parsed, ks.as_deref(), &ExecOptions::default())
                    .table;
                self.note(h.opcode, Routing { table, key: None });
                let mut b = Vec::new();
                put_i32(&mut b, 4);
                put_short_bytes(&mut b, &p.id);
                if v >= 5 {
                    put_short_bytes(&mut b, &p.result_metadata_id);
                }
                // bind metadata
                let global = p.binds.first().map(|b| (b.0.clone(), b.1.clone()));
                put_i32(&mut b, if global.is_some() { 1 } else { 0 });
                put_i32(&mut b, p.binds.len() as i32);
                if v >= 4 {
                    put_i32(&mut b, p.pk_indexes.len() as i32);
                    for i in &p.pk_indexes {
                        put_u16(&mut b, *i);
                    }
                }
                if let Some((k, t)) = &global {
                    put_string(&mut b, k);
                    put_string(&mut b, t);
                }
                for (_, _, name, ty) in &p.binds {
                    put_string(&mut b, name);
                    ty.write_option(&mut b);
                }
                // result metadata
                match &p.result {
                    Some((k, t, cols)) => {
                        put_i32(&mut b, 1);
                        put_i32(&mut b, cols.len() as i32);
                        put_string(&mut b, k);
                        put_string(&mut b, t);
                        for (n, ty) in cols {
                            put_string(&mut b, n);
                            ty.write_option(&mut b);
                        }
                    }
                    None => {
                        put_i32(&mut b, 4);
                        put_i32(&mut b, 0);
                    }
                }
                self.send_result(h, tracing, &b);
                Ok(())
            }
            OP_EXECUTE => {
                let id = r.short_bytes()?;
                let md_id = if v >= 5 { Some(r.short_bytes()?) } else { None };
                let mut p = read_params(&mut r, v)?;
                p.exec.node = self.node;
                let prep = self
                    .db
                    .get_prepared(&id)
                    .ok_or_else(|| Fail::Error(CqlError::unprepared(&id)))?;
                let ks = prep.keyspace.clone().or_else(|| self.keyspace.clone());
                let routing = self.routing(&prep.parsed, ks.as_deref(), &p.exec);
                self.note(h.opcode, routing);
                let res = self.db.execute(&prep.parsed, ks.as_deref(), &p.exec);
                let md = md_id.map(|m| (m, prep.result_metadata_id));
                self.finish(h, v, tracing, res, &p, md)
            }
            OP_BATCH => {
                let _kind = r.u8()?;
                let n = r.u16()?;
                let mut children = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let kind = r.u8()?;
                    let child = match kind {
                        0 => Child::Query(r.long_string()?),
                        1 => Child::Prepared(r.short_bytes()?),
                        k => {
                            return Err(Fail::Fatal(format!(
                                "Invalid query kind in BATCH messages. Must be 0 or 1 but got {k}"
                            )))
                        }
                    };
                    let nv = r.u16()?;
                    let mut vals = Vec::with_capacity(nv as usize);
                    for _ in 0..nv {
                        vals.push(r.value()?);
                    }
                    children.push((child, vals));
                }
                let _consistency = r.u16()?;
                let flags = if v >= 5 {
                    r.i32()? as u32
                } else {
                    r.u8()? as u32
                };
                if flags & 0x10 != 0 {
                    r.u16()?;
                }
                if flags & 0x20 != 0 {
                    r.i64()?;
                }
                let mut ks = self.keyspace.clone();
                if v >= 5 && flags & 0x80 != 0 {
                    ks = Some(r.string()?);
                }
                // Resolve everything first so that a failing child applies nothing.
                let mut plan = Vec::with_capacity(children.len());
                for (child, vals) in children {
                    match child {
                        Child::Query(q) => {
                            let parsed = crate::cql::parse(&q)
                                .map_err(|e| Fail::Error(CqlError::syntax(e.0)))?;
                            plan.push((Arc::new(parsed), ks.clone(), vals));
                        }
                        Child::Prepared(id) => {
                            let prep = self
                                .db
                                .get_prepared(&id)
                                .ok_or_else(|| Fail::Error(CqlError::unprepared(&id)))?;
                            let pks = prep.keyspace.clone().or_else(|| ks.clone());
                            plan.push((Arc::new(prep.parsed.clone()), pks, vals));
                        }
                    }
                }
                for (parsed, _, _) in &plan {
                    if !matches!(
                        parsed.stmt,
                        crate::cql::Statement::Insert { .. }
                            | crate::cql::Statement::Update { .. }
                            | crate::cql::Statement::Delete { .. }
                    ) {
                        return Err(Fail::Error(CqlError::invalid(
                            "Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed.",
                        )));
                    }
                }
                let routing = match plan.first() {
                    Some((parsed, pks, vals)) => {
                        let opts = ExecOptions {
                            values: vals.clone(),
                            node: self.node,
                            ..Default::default()
                        };
                        self.routing(parsed, pks.as_deref(), &opts)
                    }
                    None => Routing::default(),
                };
                self.note(h.opcode, routing);
                for (parsed, pks, vals) in plan {
                    let opts = ExecOptions {
                        values: vals,
                        node: self.node,
                        ..Default::default()
                    };
                    self.db
                        .execute(&parsed, pks.as_deref(), &opts)
                        .map_err(Fail::Error)?;
                }
                let mut b = Vec::new();
                put_i32(&mut b, 1);
                self.send_result(h, tracing, &b);
                Ok(())
            }
            op => Err(Fail::Fatal(format!("Unknown opcode {op}"))),
        }
    }

    fn send_result(&self, h: &Header, tracing: bool, body: &[u8]) {
        if tracing {
            let mut b = crate::util::timeuuid_now().to_vec();
            b.extend_from_slice(body);
            self.send(FLAG_TRACING, h.stream, OP_RESULT, &b);
        } else {
            self.send(0, h.stream, OP_RESULT, body);
        }
    }

    fn finish(
        &mut self,
        h: &Header,
        v: u8,
        tracing: bool,
        res: Result<Outcome, CqlError>,
        p: &Params,
        md: Option<(Vec<u8>, [u8; 16])>,
    ) -> Result<(), Fail> {
        let out = res.map_err(Fail::Error)?;
        let mut b = Vec::new();
        match out {
            Outcome::Void => put_i32(&mut b, 1),
            Outcome::SetKeyspace(ks) => {
                put_i32(&mut b, 3);
                put_string(&mut b, &ks);
                self.keyspace = Some(ks);
            }
            Outcome::SchemaChange(c) => {
                put_i32(&mut b, 5);
                schema_change_body(&mut b, &c);
            }
            Outcome::Rows(rs) => {
                put_i32(&mut b, 2);
                // In v5 a client that skips metadata gets it anyway when the id changed.
                let (skip, changed) = match (&md, p.skip_metadata) {
                    (Some((got, cur)), true) => {
                        let ok = got.as_slice() == cur.as_slice();
                        (ok, if ok { None } else { Some(*cur) })
                    }
                    (Some((got, cur)), false) if got.as_slice() != cur.as_slice() => {
                        (false, Some(*cur))
                    }
                    (None, s) => (s, None),
                    _ => (false, None),
                };
                write_rows(&mut b, v, &rs, skip, changed);
            }
        }
        self.send_result(h, tracing, &b);
        Ok(())
    }
}

fn tracing_free_event_task(
    slot: &mut Option<tokio::task::JoinHandle<()>>,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) {
    *slot = Some(tokio::spawn(fut));
}

/// The connection must close (an ERROR has been queued).
struct Closed;

enum Child {
    Query(String),
    Prepared(Vec<u8>),
}

enum Fail {
    /// Answered with an ERROR; the connection stays open.
    Error(CqlError),
    /// Protocol violation: ERROR 0x000A and close.
    Fatal(String),
}

impl From<WireError> for Fail {
    fn from(e: WireError) -> Self {
        Fail::Fatal(format!("Invalid message body: {}", e.0))
    }
}

struct Params {
    exec: ExecOptions,
    skip_metadata: bool,
    keyspace: Option<String>,
}

fn read_params(r: &mut Reader, v: u8) -> Result<Params, Fail> {
    let _consistency = r.u16()?;
    let flags: u32 = if v >= 5 {
        r.i32()? as u32
    } else {
        r.u8()? as u32
    };
    let mut exec = ExecOptions::default();
    if flags & 0x01 != 0 {
        let n = r.u16()?;
        let with_names = flags & 0x40 != 0;
        let mut names = Vec::new();
        for _ in 0..n {
            if with_names {
                names.push(r.string()?);
            }
            exec.values.push(r.value()?);
        }
        if with_names {
            exec.names = Some(names);
        }
    }
    if flags & 0x04 != 0 {
        exec.page_size = Some(r.i32()?);
    }
    if flags & 0x08 != 0 {
        exec.paging_state = r.bytes()?;
    }
    if flags & 0x10 != 0 {
        r.u16()?;
    }
    if flags & 0x20 != 0 {
        r.i64()?;
    }
    let mut keyspace = None;
    if v >= 5 && flags & 0x80 != 0 {
        keyspace = Some(r.string()?);
    }
    if v >= 5 && flags & 0x100 != 0 {
        r.i32()?;
    }
    Ok(Params {
        exec,
        skip_metadata: flags & 0x02 != 0,
        keyspace,
    })
}

fn write_rows(b: &mut Vec<u8>, v: u8, rs: &ResultSet, skip: bool, changed: Option<[u8; 16]>) {
    let mut flags = 0x01;
    if rs.paging_state.is_some() {
        flags |= 0x02;
    }
    if skip {
        flags = (flags & !0x01) | 0x04;
    }
    if changed.is_some() && v >= 5 {
        flags |= 0x08;
    }
    put_i32(b, flags);
    put_i32(b, rs.columns.len() as i32);
    if let Some(ps) = &rs.paging_state {
        put_bytes(b, Some(ps));
    }
    if let (Some(id), true) = (changed, v >= 5) {
        put_short_bytes(b, &id);
    }
    if !skip {
        put_string(b, &rs.keyspace);
        put_string(b, &rs.table);
        for (n, t) in &rs.columns {
            put_string(b, n);
            t.write_option(b);
        }
    }
    put_i32(b, rs.rows.len() as i32);
    for row in &rs.rows {
        for c in row {
            put_bytes(b, c.as_deref());
        }
    }
}

/// The body of the EVENT telling connection of node `node` about `e`, if it registered
/// for that kind (`kinds`, EVENT_* bits) and the event is not about its own node.
fn event_body(db: &Db, node: usize, kinds: u8, e: &Event) -> Option<Vec<u8>> {
    let mut b = Vec::new();
    match e {
        Event::Schema(c) if kinds & EVENT_SCHEMA != 0 => {
            put_string(&mut b, "SCHEMA_CHANGE");
            schema_change_body(&mut b, c);
        }
        Event::Status { node: about, up } if kinds & EVENT_STATUS != 0 && *about != node => {
            let n = db.nodes.get(*about)?;
            put_string(&mut b, "STATUS_CHANGE");
            put_string(&mut b, if *up { "UP" } else { "DOWN" });
            put_inet(&mut b, std::net::SocketAddr::new(n.address, n.native_port));
        }
        _ => return None,
    }
    Some(b)
}

fn schema_change_body(b: &mut Vec<u8>, c: &db::SchemaChange) {
    put_string(b, c.change);
    put_string(b, c.target);
    put_string(b, &c.keyspace);
    if let Some(n) = &c.name {
        put_string(b, n);
    }
}

fn error_body(e: &CqlError) -> Vec<u8> {
    let mut b = Vec::new();
    put_i32(&mut b, e.code);
    put_string(&mut b, &e.message);
    b.extend_from_slice(&e.extra);
    b
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        OP_STARTUP => "STARTUP",
        OP_OPTIONS => "OPTIONS",
        OP_QUERY => "QUERY",
        OP_PREPARE => "PREPARE",
        OP_EXECUTE => "EXECUTE",
        OP_REGISTER => "REGISTER",
        OP_BATCH => "BATCH",
        OP_AUTH_RESPONSE => "AUTH_RESPONSE",
        OP_AUTH_CHALLENGE => "AUTH_CHALLENGE",
        _ => "UNKNOWN",
    }
}
