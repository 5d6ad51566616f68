//! The per-connection session state machine. No NGINX types.
//!
//! The NGINX filter feeds a [`Session`] with the bytes of both directions, in whatever
//! chunks NGINX hands over, and does what each call answers ([`Action`]). The session
//! follows the CQL framing of both directions with one [`FrameReader`] each: it learns
//! the protocol version from the first frame, the negotiated compression from STARTUP,
//! switches both directions to v5 segment framing when the server answers STARTUP with
//! READY or AUTHENTICATE, and counts frames and segments per direction and opcode.

mod counters;

pub use counters::{Counters, DirectionCounters};

use core::fmt;

pub use crate::codec::Direction;
use crate::codec::{encode, CodecError, Compression, Event, FrameReader, Header, Opcode};

/// Explicit limits of a session; all configurable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted once the connection is past its handshake.
    pub max_frame_size: u32,
    /// Largest frame body accepted before that (OPTIONS, STARTUP, authentication).
    pub max_handshake_frame_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 * 1024 * 1024,
            max_handshake_frame_size: 64 * 1024,
        }
    }
}

/// What the filter must do with the bytes it just fed.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Pass them on, unchanged.
    Forward,
    /// Drop them, send `reply` to the client, then end the connection: the answer to a
    /// protocol version the proxy does not speak, so that drivers step down.
    Refuse {
        reply: Vec<u8>,
        violation: Violation,
    },
    /// End the connection; the reason goes to the error log.
    Close(Violation),
}

/// Why a connection is ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which peer sent the offending bytes.
    pub from: Direction,
    pub error: CodecError,
}

impl Violation {
    /// Whether this is a client probing for a protocol version, as drivers do when they
    /// negotiate (v1, v2, v6 or the DSE versions 0x41 and 0x42), rather than a stream that
    /// is not CQL at all.
    pub fn is_version_probe(&self) -> bool {
        matches!(
            self.error,
            CodecError::UnsupportedVersion {
                version: 1 | 2 | 6 | 0x41 | 0x42
            }
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = match self.from {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "upstream",
        };
        match self.error {
            CodecError::UnsupportedVersion { version } => write!(
                f,
                "{peer} sent protocol version {version}, which is not CQL v3, v4 or v5"
            ),
            error => write!(f, "{peer} sent an invalid CQL stream: {error}"),
        }
    }
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the server has answered STARTUP.
    Handshake,
    /// After READY or AUTHENTICATE.
    Established,
}

/// The state of one proxied CQL connection.
pub struct Session {
    limits: Limits,
    client: FrameReader,
    server: FrameReader,
    phase: Phase,
    version: Option<u8>,
    /// Compression the client asked for in STARTUP.
    compression: Compression,
    counters: Counters,
}

impl Session {
    pub fn new(limits: Limits) -> Self {
        Session {
            limits,
            client: FrameReader::new(Direction::ClientToServer, limits.max_handshake_frame_size),
            server: FrameReader::new(Direction::ServerToClient, limits.max_handshake_frame_size),
            phase: Phase::Handshake,
            version: None,
            compression: Compression::None,
            counters: Counters::default(),
        }
    }

    /// The protocol version of the connection, once its first frame was seen.
    pub fn protocol_version(&self) -> Option<u8> {
        self.version
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Reads bytes that arrived from one peer and says what to do with them.
    pub fn feed(&mut self, from: Direction, mut input: &[u8]) -> Action {
        loop {
            let reader = match from {
                Direction::ClientToServer => &mut self.client,
                Direction::ServerToClient => &mut self.server,
            };
            let (used, step) = match reader.next(input) {
                Ok((used, event)) => (used, Step::of(&event)),
                Err(error) => return self.refuse(Violation { from, error }),
            };
            input = input.get(used..).unwrap_or_default();
            match step {
                Step::NeedMore => return Action::Forward,
                Step::Header(header) => self.on_header(from, &header),
                Step::Frame(header, compression) => self.on_frame(from, &header, compression),
                Step::Segment => self.counters.of_mut(from).segments += 1,
            }
        }
    }

    /// A client's first frame in a version the proxy does not speak is answered as
    /// Cassandra does: ERROR 0x000A on stream 0 naming the supported versions.
    fn refuse(&self, violation: Violation) -> Action {
        match violation.error {
            CodecError::UnsupportedVersion { version }
                if violation.from == Direction::ClientToServer && self.version.is_none() =>
            {
                let mut reply = Vec::new();
                encode::write_unsupported_version(version, &mut reply);
                Action::Refuse { reply, violation }
            }
            _ => Action::Close(violation),
        }
    }

    fn on_header(&mut self, from: Direction, header: &Header) {
        if self.version.is_none() {
            self.version = Some(header.version);
        }
        // STARTUP names the compression both directions use afterwards.
        if from == Direction::ClientToServer && header.opcode == Opcode::Startup {
            self.client.capture_body();
        }
    }

    fn on_frame(&mut self, from: Direction, header: &Header, startup: Option<Compression>) {
        self.counters.of_mut(from).count(header.opcode);
        if let Some(compression) = startup {
            self.compression = compression;
            if header.version < 5 {
                self.client.set_compression(compression);
                self.server.set_compression(compression);
            }
        }
        let answers_startup = matches!(header.opcode, Opcode::Ready | Opcode::Authenticate);
        if from == Direction::ServerToClient && self.phase == Phase::Handshake && answers_startup {
            self.phase = Phase::Established;
            if header.version >= 5 {
                let lz4 = self.compression == Compression::Lz4;
                self.client.start_segments(lz4);
                self.server.start_segments(lz4);
            }
            if header.opcode == Opcode::Ready {
                self.open_limits();
            }
        }
        if from == Direction::ServerToClient && header.opcode == Opcode::AuthSuccess {
            self.open_limits();
        }
    }

    /// After authentication, frames may be as large as `max_frame_size`.
    fn open_limits(&mut self) {
        self.client.set_max_body(self.limits.max_frame_size);
        self.server.set_max_body(self.limits.max_frame_size);
    }
}

/// What an [`Event`] means to the session, without borrowing the reader.
enum Step {
    NeedMore,
    Header(Header),
    /// A whole frame; for STARTUP, the compression it asks for.
    Frame(Header, Option<Compression>),
    Segment,
}

impl Step {
    fn of(event: &Event<'_>) -> Step {
        match event {
            Event::NeedMore => Step::NeedMore,
            Event::Header(header) => Step::Header(*header),
            Event::Frame { header, body } => {
                let startup = match (header.opcode, body) {
                    (Opcode::Startup, Some(body)) => Some(startup_compression(body)),
                    _ => None,
                };
                Step::Frame(*header, startup)
            }
            Event::SegmentEnd { .. } => Step::Segment,
        }
    }
}

/// The compression a STARTUP body asks for; none if it names none or cannot be read
/// (the server will refuse such a STARTUP itself).
fn startup_compression(body: &[u8]) -> Compression {
    match crate::codec::messages::Startup::decode(body) {
        Ok(startup) => match startup.compression() {
            Some(name) if name.eq_ignore_ascii_case("lz4") => Compression::Lz4,
            Some(name) if name.eq_ignore_ascii_case("snappy") => Compression::Snappy,
            _ => Compression::None,
        },
        Err(_) => Compression::None,
    }
}
