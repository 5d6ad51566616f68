//! A small raw CQL v4 client for tests that must send what no driver sends: pipelined
//! requests on chosen stream ids, several requests in one write, frames that are never
//! answered, sockets that are never read.
//!
//! It speaks uncompressed v4 envelopes only (requests `0x04`, responses `0x84`, flags 0)
//! and is written apart from the module's codec, as the development server's is, so that
//! a codec bug cannot hide on both sides of a test. Every read has a deadline: a test
//! waits for the proxy's answer or its close, never for a fixed time.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The version byte of a v4 request.
pub const REQUEST: u8 = 0x04;
/// The version byte of a v4 response.
pub const RESPONSE: u8 = 0x84;
/// The envelope header: version, flags, stream (i16), opcode, body length (i32).
pub const HEADER_LEN: usize = 9;

/// Opcodes (native protocol v4, section 2.4).
pub mod opcode {
    pub const ERROR: u8 = 0x00;
    pub const STARTUP: u8 = 0x01;
    pub const READY: u8 = 0x02;
    pub const AUTHENTICATE: u8 = 0x03;
    pub const OPTIONS: u8 = 0x05;
    pub const SUPPORTED: u8 = 0x06;
    pub const QUERY: u8 = 0x07;
    pub const RESULT: u8 = 0x08;
    pub const PREPARE: u8 = 0x09;
    pub const EXECUTE: u8 = 0x0A;
    pub const REGISTER: u8 = 0x0B;
    pub const EVENT: u8 = 0x0C;
    pub const BATCH: u8 = 0x0D;
    pub const AUTH_CHALLENGE: u8 = 0x0E;
    pub const AUTH_RESPONSE: u8 = 0x0F;
    pub const AUTH_SUCCESS: u8 = 0x10;

    /// Whether a server may send this opcode.
    pub fn is_response(opcode: u8) -> bool {
        matches!(
            opcode,
            ERROR
                | READY
                | AUTHENTICATE
                | SUPPORTED
                | RESULT
                | EVENT
                | AUTH_CHALLENGE
                | AUTH_SUCCESS
        )
    }
}

/// Error codes (native protocol v4, section 9).
pub mod code {
    pub const PROTOCOL_ERROR: i32 = 0x000A;
    pub const BAD_CREDENTIALS: i32 = 0x0100;
    pub const SYNTAX_ERROR: i32 = 0x2000;
    pub const UNAUTHORIZED: i32 = 0x2100;
    pub const INVALID: i32 = 0x2200;
    pub const UNPREPARED: i32 = 0x2500;
}

/// Consistency ONE.
const ONE: u16 = 0x0001;

/// One envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub body: Vec<u8>,
}

impl fmt::Debug for Frame {
    /// The header and the decoded response, not the (possibly megabytes of) body bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame {{ version: {:#04x}, stream: {}, opcode: {:#04x}, length: {}, {:?} }}",
            self.version,
            self.stream,
            self.opcode,
            self.body.len(),
            self.response()
        )
    }
}

impl Frame {
    /// A v4 request.
    pub fn request(stream: i16, opcode: u8, body: Vec<u8>) -> Frame {
        Frame {
            version: REQUEST,
            flags: 0,
            stream,
            opcode,
            body,
        }
    }

    /// The envelope's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.push(self.opcode);
        let length = i32::try_from(self.body.len()).expect("a body below 2 GiB");
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.body);
    }

    /// The body decoded as a response.
    pub fn response(&self) -> Result<Response, String> {
        Response::decode(self.opcode, &self.body)
    }
}

/// The bytes of several frames, to be sent in one write.
pub fn concat(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.write_to(&mut out);
    }
    out
}

/// STARTUP {"CQL_VERSION": "3.0.0"}.
pub fn startup(stream: i16) -> Frame {
    let mut body = Vec::new();
    put_short(&mut body, 1);
    put_string(&mut body, "CQL_VERSION");
    put_string(&mut body, "3.0.0");
    Frame::request(stream, opcode::STARTUP, body)
}

/// AUTH_RESPONSE with a SASL PLAIN token: `\0user\0password`.
pub fn auth_response(stream: i16, user: &str, password: &str) -> Frame {
    let mut token = vec![0];
    token.extend_from_slice(user.as_bytes());
    token.push(0);
    token.extend_from_slice(password.as_bytes());
    let mut body = Vec::new();
    put_bytes(&mut body, &token);
    Frame::request(stream, opcode::AUTH_RESPONSE, body)
}

/// QUERY of `text` at consistency ONE, no flags (no values, no paging).
pub fn query(stream: i16, text: &str) -> Frame {
    let mut body = Vec::new();
    put_long_string(&mut body, text);
    put_short(&mut body, ONE);
    body.push(0);
    Frame::request(stream, opcode::QUERY, body)
}

/// PREPARE of `text`.
pub fn prepare(stream: i16, text: &str) -> Frame {
    let mut body = Vec::new();
    put_long_string(&mut body, text);
    Frame::request(stream, opcode::PREPARE, body)
}

/// EXECUTE of a prepared id at consistency ONE, no flags (no values).
pub fn execute(stream: i16, id: &[u8]) -> Frame {
    let mut body = Vec::new();
    put_short(&mut body, u16::try_from(id.len()).expect("a short id"));
    body.extend_from_slice(id);
    put_short(&mut body, ONE);
    body.push(0);
    Frame::request(stream, opcode::EXECUTE, body)
}

fn put_short(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_short(out, u16::try_from(s.len()).expect("a short string"));
    out.extend_from_slice(s.as_bytes());
}

fn put_long_string(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let n = i32::try_from(b.len()).expect("bytes below 2 GiB");
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
}

/// A decoded response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Error {
        code: i32,
        message: String,
    },
    Ready,
    Authenticate(String),
    AuthSuccess,
    /// RESULT Void.
    Void,
    /// RESULT Rows: each row's cells (`None` for null).
    Rows(Vec<Vec<Option<Vec<u8>>>>),
    /// RESULT Set_keyspace.
    SetKeyspace(String),
    /// RESULT Prepared: the id.
    Prepared(Vec<u8>),
    /// RESULT Schema_change.
    SchemaChange,
    /// Any other opcode.
    Other(u8),
}

impl Response {
    /// Decodes a response body.
    pub fn decode(op: u8, body: &[u8]) -> Result<Response, String> {
        let mut r = Reader::new(body);
        let response = match op {
            opcode::ERROR => Response::Error {
                code: r.int()?,
                message: r.string()?,
            },
            opcode::READY => Response::Ready,
            opcode::AUTHENTICATE => Response::Authenticate(r.string()?),
            opcode::AUTH_SUCCESS => Response::AuthSuccess,
            opcode::RESULT => match r.int()? {
                1 => Response::Void,
                2 => Response::Rows(r.rows()?),
                3 => Response::SetKeyspace(r.string()?),
                4 => Response::Prepared(r.short_bytes()?.to_vec()),
                5 => Response::SchemaChange,
                kind => return Err(format!("unknown RESULT kind {kind}")),
            },
            other => Response::Other(other),
        };
        Ok(response)
    }

    /// The error code, if this is an ERROR.
    pub fn error_code(&self) -> Option<i32> {
        match self {
            Response::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this is an ERROR with `code` whose message contains `text`.
    pub fn is_error(&self, code: i32, text: &str) -> bool {
        matches!(self, Response::Error { code: c, message } if *c == code && message.contains(text))
    }
}

/// A cursor over a body; every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!(
                "body ends early: {n} bytes wanted, {} left",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn short(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn int(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.short()?;
        let b = self.take(usize::from(n))?;
        String::from_utf8(b.to_vec()).map_err(|e| format!("a string that is not UTF-8: {e}"))
    }

    fn short_bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.short()?;
        self.take(usize::from(n))
    }

    /// `[bytes]`: `None` for a negative length (null).
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        let n = self.int()?;
        match usize::try_from(n) {
            Ok(n) => self.take(n).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A type `[option]`, skipped (section 4.2.5.2).
    fn skip_type(&mut self) -> Result<(), String> {
        match self.short()? {
            0x0000 => {
                self.string()?;
            }
            0x0020 | 0x0022 => self.skip_type()?,
            0x0021 => {
                self.skip_type()?;
                self.skip_type()?;
            }
            0x0030 => {
                self.string()?;
                self.string()?;
                for _ in 0..self.short()? {
                    self.string()?;
                    self.skip_type()?;
                }
            }
            0x0031 => {
                for _ in 0..self.short()? {
                    self.skip_type()?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The body of RESULT Rows after its kind: metadata, then the rows.
    fn rows(&mut self) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        const GLOBAL_TABLES_SPEC: i32 = 0x0001;
        const HAS_MORE_PAGES: i32 = 0x0002;
        const NO_METADATA: i32 = 0x0004;
        let flags = self.int()?;
        let columns = usize::try_from(self.int()?).map_err(|_| "negative column count")?;
        if flags & HAS_MORE_PAGES != 0 {
            self.bytes()?;
        }
        if flags & NO_METADATA == 0 {
            if flags & GLOBAL_TABLES_SPEC != 0 {
                self.string()?;
                self.string()?;
            }
            for _ in 0..columns {
                if flags & GLOBAL_TABLES_SPEC == 0 {
                    self.string()?;
                    self.string()?;
                }
                self.string()?;
                self.skip_type()?;
            }
        }
        let count = usize::try_from(self.int()?).map_err(|_| "negative row count")?;
        let mut rows = Vec::new();
        for _ in 0..count {
            let mut row = Vec::with_capacity(columns);
            for _ in 0..columns {
                row.push(self.bytes()?.map(<[u8]>::to_vec));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Splits the bytes a server sent into v4 response frames, strictly: every header must
/// carry version `0x84` and a response opcode, and announce a body that is all there.
pub fn parse_responses(mut bytes: &[u8]) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while !bytes.is_empty() {
        let Some((frame, used)) = split_frame(bytes)? else {
            let announced = bytes
                .get(5..HEADER_LEN)
                .map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]));
            return Err(format!(
                "the header at offset {offset} ({:02x?}) announces a body of {announced:?} \
                 bytes, and only {} bytes follow (after {frames:?})",
                bytes.get(..HEADER_LEN).unwrap_or(bytes),
                bytes.len().saturating_sub(HEADER_LEN)
            ));
        };
        if frame.version != RESPONSE || !opcode::is_response(frame.opcode) {
            return Err(format!(
                "no response header at offset {offset}: {frame:?} (after {frames:?})"
            ));
        }
        frames.push(frame);
        offset += used;
        bytes = &bytes[used..];
    }
    Ok(frames)
}

/// The first whole frame of `bytes` and how many bytes it took; `None` if it is not all
/// there yet.
fn split_frame(bytes: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let length = usize::try_from(length).map_err(|_| format!("negative length {length}"))?;
    let Some(body) = bytes.get(HEADER_LEN..HEADER_LEN + length) else {
        return Ok(None);
    };
    let frame = Frame {
        version: header[0],
        flags: header[1],
        stream: i16::from_be_bytes([header[2], header[3]]),
        opcode: header[4],
        body: body.to_vec(),
    };
    Ok(Some((frame, HEADER_LEN + length)))
}

/// How reading from a peer stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed the connection (end of file).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// Nothing whole arrived before the deadline.
    TimedOut,
    /// The caller had read enough before the peer ended the connection.
    Stopped,
}

impl Ended {
    /// Whether the peer ended the connection, by a close or a reset.
    pub fn by_peer(self) -> bool {
        matches!(self, Ended::Closed | Ended::Reset)
    }
}

/// A raw connection: frames out, frames in.
pub struct Client {
    stream: TcpStream,
    /// Bytes read and not yet taken as frames.
    buffer: Vec<u8>,
}

/// How long a test waits for an answer it expects.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

impl Client {
    /// Connects to a loopback port.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Client {
            stream,
            buffer: Vec::new(),
        }
    }

    /// A connection to a server without authentication (the development server itself):
    /// STARTUP answered by READY.
    pub fn direct(port: u16) -> Client {
        let mut client = Client::connect(port);
        let ready = client.request(startup(0));
        assert_eq!(ready, Response::Ready, "STARTUP at 127.0.0.1:{port}");
        client
    }

    /// A connection logged in through the proxy with SASL PLAIN `user` / `password`.
    pub fn login(port: u16, user: &str, password: &str) -> Client {
        let mut client = Client::connect(port);
        let answer = client.try_login(user, password);
        assert_eq!(answer, Response::AuthSuccess, "login of {user}");
        client
    }

    /// STARTUP, then the token asked for: the answer to AUTH_RESPONSE.
    pub fn try_login(&mut self, user: &str, password: &str) -> Response {
        let asked = self.request(startup(0));
        assert!(
            matches!(asked, Response::Authenticate(_)),
            "STARTUP answered {asked:?}, not AUTHENTICATE"
        );
        self.request(auth_response(0, user, password))
    }

    /// The local port: the `client` of this connection's audit lines is `127.0.0.1:PORT`.
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().expect("local address").port()
    }

    /// Limits the kernel's receive buffer (`SO_RCVBUF`), as a client that reads slowly or
    /// never does: what the proxy sends it backs up in the proxy instead.
    pub fn set_receive_buffer(&self, bytes: i32) {
        let fd = self.stream.as_raw_fd();
        let size = core::mem::size_of::<i32>() as nginx_sys::socklen_t;
        // SAFETY: a valid socket and a pointer to an int that lives across the call.
        let rc = unsafe {
            nginx_sys::setsockopt(
                fd,
                nginx_sys::SOL_SOCKET as i32,
                nginx_sys::SO_RCVBUF as i32,
                (&bytes as *const i32).cast(),
                size,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt SO_RCVBUF: {}",
            io::Error::last_os_error()
        );
    }

    /// Sends the frames in one write.
    pub fn send(&mut self, frames: &[Frame]) -> io::Result<()> {
        self.send_bytes(&concat(frames))
    }

    /// Sends raw bytes in one write.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.set_write_timeout(Some(ANSWER_WITHIN))?;
        self.stream.write_all(bytes)
    }

    /// The socket, for tests that write without reading.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The next frame, or why none came within `limit`.
    pub fn recv(&mut self, limit: Duration) -> Result<Frame, Ended> {
        let deadline = Instant::now() + limit;
        loop {
            match split_frame(&self.buffer) {
                Ok(Some((frame, used))) => {
                    self.buffer.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => panic!("the peer sent a malformed frame: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Ended::TimedOut);
            }
            self.read_some(left)?;
        }
    }

    /// Reads what arrives within `left` into the buffer.
    fn read_some(&mut self, left: Duration) -> Result<usize, Ended> {
        self.stream
            .set_read_timeout(Some(left))
            .expect("set read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(Ended::Closed),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(Ended::TimedOut),
                io::ErrorKind::Interrupted => Ok(0),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Err(Ended::Reset),
                _ => panic!("read from the peer: {e}"),
            },
        }
    }

    /// The next frame; fails the test if none comes.
    pub fn expect_frame(&mut self) -> Frame {
        self.recv(ANSWER_WITHIN)
            .unwrap_or_else(|ended| panic!("no answer: {ended:?}"))
    }

    /// Sends one request and returns its answer (which must come on its stream).
    pub fn request(&mut self, frame: Frame) -> Response {
        let stream = frame.stream;
        self.send(&[frame]).expect("send a request");
        let answer = self.expect_frame();
        assert_eq!(
            answer.stream, stream,
            "answer on another stream: {answer:?}"
        );
        answer
            .response()
            .unwrap_or_else(|e| panic!("undecodable answer {answer:?}: {e}"))
    }

    /// The answers to requests on the given streams, sent before, in whatever order they
    /// come; fails the test if one is missing or a frame comes on another stream.
    pub fn answers(&mut self, streams: &[i16]) -> Vec<Response> {
        let mut answers: Vec<Option<Response>> = vec![None; streams.len()];
        while answers.iter().any(Option::is_none) {
            let frame = self.recv(ANSWER_WITHIN).unwrap_or_else(|ended| {
                panic!("answers to streams {streams:?}: {ended:?} after {answers:?}")
            });
            let Some(i) = streams.iter().position(|s| *s == frame.stream) else {
                panic!("a frame on an unexpected stream: {frame:?}");
            };
            assert!(
                answers[i].is_none(),
                "two answers on stream {}",
                frame.stream
            );
            answers[i] = Some(frame.response().expect("a decodable answer"));
        }
        answers.into_iter().flatten().collect()
    }

    /// Every frame that arrives until the peer ends the connection, `stop` says enough, or
    /// `limit` passes.
    pub fn read_until_end(
        &mut self,
        limit: Duration,
        stop: impl Fn(&[Frame]) -> bool,
    ) -> (Vec<Frame>, Ended) {
        let deadline = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            if stop(&frames) {
                return (frames, Ended::Stopped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(frame) => frames.push(frame),
                Err(ended) => return (frames, ended),
            }
        }
    }

    /// Waits until at least `n` bytes were read (and not yet taken as frames).
    pub fn wait_for_bytes(&mut self, n: usize, limit: Duration) -> Result<(), Ended> {
        let deadline = Instant::now() + limit;
        while self.buffer.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Ended::TimedOut);
            }
            self.read_some(left)?;
        }
        Ok(())
    }

    /// Every byte that arrives until the peer ends the connection or `limit` passes, with
    /// those read before and not yet taken as frames.
    pub fn read_bytes_until_end(&mut self, limit: Duration) -> (Vec<u8>, Ended) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (core::mem::take(&mut self.buffer), Ended::TimedOut);
            }
            if let Err(ended) = self.read_some(left) {
                return (core::mem::take(&mut self.buffer), ended);
            }
        }
    }
}
