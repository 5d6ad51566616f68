//! One CQL connection: buffered frame reading (large RESULT bodies are counted and
//! discarded without being kept whole), request/response round trips for set-up, and the
//! handshake (STARTUP, then AUTH_RESPONSE with SASL PLAIN when the server or proxy asks).

use std::fmt;
use std::ops::Range;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frame::{self, Header};

/// Bodies larger than this, of RESULT frames, are skipped as they arrive.
const SKIP_ABOVE: u32 = 64 * 1024;
/// Read at most this much per read call, or more when one frame needs it.
const READ_BUFFER: usize = 256 * 1024;
/// Compact the buffer when less than this is free at its end.
const MIN_FREE: usize = 32 * 1024;

/// Why a connection, a handshake or a request failed.
#[derive(Debug, Clone)]
pub enum Failure {
    Io(String),
    /// An ERROR response: code and message.
    Server(i32, String),
    Protocol(String),
}

impl Failure {
    /// A short key for counting failures of the same kind.
    pub fn key(&self) -> String {
        let mut s = match self {
            Failure::Io(e) => format!("io: {e}"),
            Failure::Server(code, msg) => {
                format!("ERROR 0x{code:04X} {}: {msg}", frame::error_name(*code))
            }
            Failure::Protocol(e) => format!("protocol: {e}"),
        };
        if s.len() > 200 {
            let mut cut = 200;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e.to_string())
    }
}

/// A response frame read whole (`body` indexes the connection's buffer until the next
/// `fill`) or, for a large RESULT, skipped (`body` is `None`).
#[derive(Debug, Clone)]
pub struct Frame {
    pub header: Header,
    pub body: Option<Range<usize>>,
}

pub struct Conn {
    pub sock: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The header of a large RESULT being skipped, and how many body bytes are left.
    skipping: Option<(Header, usize)>,
    /// The whole size of the frame at `start` when it does not fit yet.
    want: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Conn {
    pub async fn connect(addr: &str) -> Result<Conn, Failure> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        Ok(Conn {
            sock,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            skipping: None,
            want: 0,
            bytes_in: 0,
            bytes_out: 0,
        })
    }

    /// Connects and completes the handshake; `auth` is the user and password (token) to
    /// give when asked. A server that answers READY asks for none.
    pub async fn open(addr: &str, auth: Option<(&str, &str)>) -> Result<Conn, Failure> {
        let mut c = Conn::connect(addr).await?;
        c.handshake(auth).await?;
        Ok(c)
    }

    pub async fn handshake(&mut self, auth: Option<(&str, &str)>) -> Result<(), Failure> {
        let (h, body) = self
            .round_trip(0, frame::OP_STARTUP, &frame::startup_body())
            .await?;
        match h.opcode {
            frame::OP_READY => Ok(()),
            frame::OP_AUTHENTICATE => {
                let Some((user, password)) = auth else {
                    return Err(Failure::Protocol(
                        "the server asks for credentials (AUTHENTICATE) and none were given".into(),
                    ));
                };
                let (h, body) = self
                    .round_trip(
                        0,
                        frame::OP_AUTH_RESPONSE,
                        &frame::auth_response_body(user, password),
                    )
                    .await?;
                match h.opcode {
                    frame::OP_AUTH_SUCCESS => Ok(()),
                    frame::OP_ERROR => Err(server_error(h, &body)),
                    frame::OP_AUTH_CHALLENGE => Err(Failure::Protocol(
                        "AUTH_CHALLENGE: SASL PLAIN takes one step".into(),
                    )),
                    op => Err(Failure::Protocol(format!(
                        "opcode 0x{op:02X} in answer to AUTH_RESPONSE"
                    ))),
                }
            }
            frame::OP_ERROR => Err(server_error(h, &body)),
            op => Err(Failure::Protocol(format!(
                "opcode 0x{op:02X} in answer to STARTUP"
            ))),
        }
    }

    /// Sends one request on `stream` and returns its response (events and other streams
    /// are skipped). Not for large results.
    pub async fn round_trip(
        &mut self,
        stream: i16,
        opcode: u8,
        body: &[u8],
    ) -> Result<(Header, Vec<u8>), Failure> {
        let mut out = Vec::with_capacity(frame::HEADER_LEN + body.len());
        frame::put_frame(&mut out, stream, opcode, body);
        self.write(&out).await?;
        loop {
            while let Some(f) = self.next_frame()? {
                if f.header.stream == stream {
                    let body = match f.body {
                        Some(r) => frame::message_body(f.header.flags, &self.buf[r])
                            .map_err(Failure::Protocol)?
                            .to_vec(),
                        None => Vec::new(),
                    };
                    return Ok((f.header, body));
                }
            }
            self.fill().await?;
        }
    }

    /// QUERY and an error unless the answer is a RESULT.
    pub async fn query(&mut self, cql: &str) -> Result<i32, Failure> {
        let (h, body) = self
            .round_trip(0, frame::OP_QUERY, &frame::query_body(cql))
            .await?;
        expect_result(h, &body)
    }

    /// PREPARE and the prepared id.
    pub async fn prepare(&mut self, cql: &str) -> Result<Vec<u8>, Failure> {
        let (h, body) = self
            .round_trip(0, frame::OP_PREPARE, &frame::prepare_body(cql))
            .await?;
        expect_result(h, &body)?;
        frame::parse_prepared(&body).map_err(Failure::Protocol)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.sock.write_all(bytes).await?;
        self.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// Reads once from the socket (at least one byte, or an error at end of stream).
    pub async fn fill(&mut self) -> Result<(), Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < MIN_FREE || self.want > self.buf.len() - self.start {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.want > self.buf.len() {
                self.buf.resize(self.want, 0);
            }
        }
        let n = self.sock.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(Failure::Io("connection closed by the peer".into()));
        }
        self.end += n;
        self.bytes_in += n as u64;
        Ok(())
    }

    /// The next complete frame in the buffer, if any.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Failure> {
        loop {
            if let Some((header, left)) = self.skipping {
                let n = left.min(self.end - self.start);
                self.start += n;
                if n == left {
                    self.skipping = None;
                    return Ok(Some(Frame { header, body: None }));
                }
                self.skipping = Some((header, left - n));
                return Ok(None);
            }
            let Some(header) = frame::parse_header(&self.buf[self.start..self.end]) else {
                return Ok(None);
            };
            if header.version != frame::RESPONSE_VERSION {
                return Err(Failure::Protocol(format!(
                    "response version byte 0x{:02X}, expected 0x{:02X}",
                    header.version,
                    frame::RESPONSE_VERSION
                )));
            }
            if header.flags & 0x01 != 0 {
                return Err(Failure::Protocol(
                    "compressed frame, none negotiated".into(),
                ));
            }
            let total = frame::HEADER_LEN + header.length as usize;
            if header.length > SKIP_ABOVE && header.opcode == frame::OP_RESULT {
                self.start += frame::HEADER_LEN;
                self.skipping = Some((header, header.length as usize));
                continue;
            }
            if self.end - self.start < total {
                self.want = total;
                return Ok(None);
            }
            self.want = 0;
            let body = self.start + frame::HEADER_LEN..self.start + total;
            self.start += total;
            return Ok(Some(Frame {
                header,
                body: Some(body),
            }));
        }
    }

    /// The bytes of a frame's body returned by `next_frame` (valid until `fill`).
    pub fn body(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// An ERROR response as a failure.
pub fn server_error(h: Header, body: &[u8]) -> Failure {
    match frame::parse_error(body) {
        Ok((code, msg)) => Failure::Server(code, msg),
        Err(e) => Failure::Protocol(format!("unreadable ERROR body on stream {}: {e}", h.stream)),
    }
}

fn expect_result(h: Header, body: &[u8]) -> Result<i32, Failure> {
    match h.opcode {
        frame::OP_RESULT => frame::result_kind(body).map_err(Failure::Protocol),
        frame::OP_ERROR => Err(server_error(h, body)),
        op => Err(Failure::Protocol(format!(
            "opcode 0x{op:02X} where RESULT was expected"
        ))),
    }
}
