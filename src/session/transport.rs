//! The transport: both directions' CQL framing, read in whatever chunks the I/O layer
//! hands over.
//!
//! One [`FrameReader`] per direction learns the protocol version from the first frame, the
//! compression from STARTUP, and switches to v5 segments when a peer is sent READY or
//! AUTHENTICATE. Bytes go one of three ways: watched (forwarded as they came, only the
//! frames a decision needs read), held (each frame, or v5 run of segments, kept until it is
//! whole and decided, then copied on, dropped or re-framed), or interleaved (server bytes
//! copied through while the proxy's own answers wait for a frame boundary). The gate
//! ([`super::pipeline`], [`super::requests`], [`super::handshake`]) decides whole frames.

use crate::codec::header::HEADER_LEN;
use crate::codec::{
    CodecError, Compression, Direction, Event, FrameReader, Framing, Header, Opcode,
};

use super::handshake::AuthState;
use super::pipeline::Keep;
use super::unit::Unit;
use super::{Fed, Session, Violation};

impl Session {
    pub(super) fn feed_bytes(&mut self, from: Direction, input: &[u8], now: u64) -> Fed {
        if self.closing {
            // Refused: nothing more goes on, but the server's response in progress ends
            // before the refusal that waits for it.
            return match from {
                Direction::ServerToClient if !self.out.deferred.is_empty() => {
                    self.feed_interleaving(input, now)
                }
                _ => Fed::Replace,
            };
        }
        if self.auth == AuthState::PassThrough {
            return self.feed_watching(from, input, now);
        }
        match from {
            Direction::ClientToServer => self.feed_held(from, input, now),
            Direction::ServerToClient
                if self.auth.holds_server()
                    || !self.server_unit.is_empty()
                    || self.server_passing
                    || (self.topology_window() && self.server.at_boundary()) =>
            {
                self.feed_held(from, input, now)
            }
            Direction::ServerToClient if !self.out.deferred.is_empty() => {
                self.feed_interleaving(input, now)
            }
            Direction::ServerToClient => self.feed_watching(from, input, now),
        }
    }

    /// Follows the framing without changing anything: every chunk goes on as it came. Should
    /// a topology answer or event be due at a frame boundary, the bytes read so far go on
    /// copied and the rest is held frame by frame.
    pub(super) fn feed_watching(&mut self, from: Direction, mut input: &[u8], now: u64) -> Fed {
        let whole = input;
        loop {
            if from == Direction::ServerToClient
                && self.server.at_boundary()
                && self.topology_window()
            {
                let seen = whole.len() - input.len();
                self.out
                    .to_client
                    .extend_from_slice(whole.get(..seen).unwrap_or_default());
                return self.feed_held(from, input, now);
            }
            if input.is_empty() && self.reader(from).at_boundary() {
                return Fed::Forward;
            }
            // A whole frame whose body no one reads: seen without the reader.
            if let Some(header) = self.reader(from).whole_frame(input) {
                if !self.wants_body(from, &header, false) {
                    self.learn_version(&header);
                    self.counters.of_mut(from).count(header.opcode);
                    self.on_watched_frame(from, &header, false);
                    input = input
                        .get(HEADER_LEN + header.length as usize..)
                        .unwrap_or_default();
                    continue;
                }
            }
            let (used, step) = match self.read_step(from, input) {
                Ok(read) => read,
                Err(error) => return self.refuse(Violation::codec(from, error)),
            };
            input = input.get(used..).unwrap_or_default();
            if self.on_passed_step(from, step) {
                return Fed::Forward;
            }
        }
    }

    /// Server bytes after the handshake while answers of the proxy's own wait: the bytes
    /// are copied through, and the waiting answers inserted at the first frame boundary.
    pub(super) fn feed_interleaving(&mut self, mut input: &[u8], now: u64) -> Fed {
        let from = Direction::ServerToClient;
        loop {
            if self.server.at_boundary() && !self.out.deferred.is_empty() {
                self.out.to_client.append(&mut self.out.deferred);
            }
            if self.closing && self.out.deferred.is_empty() {
                return Fed::Replace;
            }
            if !self.closing && self.server.at_boundary() && self.topology_window() {
                return self.feed_held(from, input, now);
            }
            let (used, step) = match self.read_step(from, input) {
                Ok(read) => read,
                Err(error) => return Fed::Close(Violation::codec(from, error)),
            };
            self.out
                .to_client
                .extend_from_slice(input.get(..used).unwrap_or_default());
            input = input.get(used..).unwrap_or_default();
            if self.on_passed_step(from, step) {
                return Fed::Replace;
            }
        }
    }

    /// Reads the next step of `from`'s stream: the bytes the reader took, and what they
    /// came to (a captured body is copied into the scratch buffer).
    fn read_step(&mut self, from: Direction, input: &[u8]) -> Result<(usize, Step), CodecError> {
        let reader = match from {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        };
        let (used, event) = reader.next(input)?;
        Ok((used, Step::of(event, &mut self.scratch)))
    }

    /// A step of bytes that go on as they came: the framing is learnt, frames counted and
    /// seen. Whether the reader needs more input.
    fn on_passed_step(&mut self, from: Direction, step: Step) -> bool {
        match step {
            Step::NeedMore => return true,
            Step::Header(header) => self.on_header(from, &header, false),
            Step::Frame(header, captured) => {
                self.counters.of_mut(from).count(header.opcode);
                self.on_watched_frame(from, &header, captured);
            }
            Step::Segment => self.counters.of_mut(from).segments += 1,
        }
        false
    }

    /// Holds the bytes of each frame (each run of segments in v5) until it is whole and
    /// decided, then copies it on, drops it, or re-frames its segment without it.
    pub(super) fn feed_held(&mut self, from: Direction, mut input: &[u8], now: u64) -> Fed {
        loop {
            if input.is_empty() && self.reader(from).at_boundary() {
                return Fed::Replace;
            }
            if from == Direction::ClientToServer {
                match self.whole_request(input, now) {
                    Some(Ok(used)) => {
                        input = input.get(used..).unwrap_or_default();
                        continue;
                    }
                    Some(Err(action)) => return action,
                    None => {}
                }
            }
            let (used, step) = match self.read_step(from, input) {
                Ok(read) => read,
                Err(error) => return self.refuse(Violation::codec(from, error)),
            };
            let bytes = input.get(..used).unwrap_or_default();
            match from {
                Direction::ServerToClient if self.server_passing => {
                    self.out.to_client.extend_from_slice(bytes)
                }
                Direction::ClientToServer => self.client_unit.hold(bytes),
                Direction::ServerToClient => self.server_unit.hold(bytes),
            }
            input = input.get(used..).unwrap_or_default();
            match step {
                Step::NeedMore => return Fed::Replace,
                Step::Header(header)
                    if from == Direction::ServerToClient && self.watches_frames() =>
                {
                    self.on_watched_header(&header);
                }
                Step::Header(header) => {
                    if let Err(refusal) = self.check_header(from, &header) {
                        return refusal;
                    }
                    self.on_header(from, &header, true);
                }
                Step::Frame(header, captured)
                    if from == Direction::ServerToClient && self.watches_frames() =>
                {
                    self.counters.of_mut(from).count(header.opcode);
                    self.on_watched_response(&header, captured);
                }
                Step::Frame(header, _) => {
                    self.counters.of_mut(from).count(header.opcode);
                    let body = core::mem::take(&mut self.scratch);
                    let kept = match from {
                        Direction::ClientToServer => self.on_client_frame(&header, &body, now),
                        Direction::ServerToClient => self
                            .on_held_response(&header, &body)
                            .map(|keep| if keep { Keep::Forward } else { Keep::Drop }),
                    };
                    let in_segments = self.reader(from).in_segments();
                    match kept {
                        Ok(Keep::Forward) => {
                            let (unit, out) = self.unit_and_output(from);
                            unit.frame_done(&header, &body, true, in_segments, out);
                            self.scratch = body;
                        }
                        Ok(Keep::Drop) => {
                            let (unit, out) = self.unit_and_output(from);
                            unit.frame_done(&header, &body, false, in_segments, out);
                            self.scratch = body;
                        }
                        Ok(Keep::Park { decided }) => self.park(header, body, decided),
                        Err(refusal) => {
                            self.scratch = body;
                            return refusal;
                        }
                    }
                    if self.closing {
                        return Fed::Replace;
                    }
                    self.after_frame(from, &header);
                }
                Step::Segment => {
                    self.counters.of_mut(from).segments += 1;
                    if self.reader(from).at_boundary() {
                        let lz4 = self.compression == Compression::Lz4;
                        let (unit, out) = self.unit_and_output(from);
                        unit.run_done(lz4, out);
                        if from == Direction::ClientToServer {
                            self.parked.seal();
                        }
                    }
                }
            }
            if from == Direction::ServerToClient
                && self.server_unit.is_empty()
                && self.server.at_boundary()
            {
                self.out.to_client.append(&mut self.out.deferred);
            }
        }
    }

    /// v3/v4: a client frame that `input` holds whole and uncompressed is decided from the
    /// input itself, without the reader buffering its body or the unit holding its bytes;
    /// returns the bytes it took, or what ends the connection. `None`: the usual path.
    pub(super) fn whole_request(&mut self, input: &[u8], now: u64) -> Option<Result<usize, Fed>> {
        if !self.client_unit.is_empty() {
            return None;
        }
        let header = self.client.whole_frame(input)?;
        if header.flags.compression() {
            return None;
        }
        let from = Direction::ClientToServer;
        let end = HEADER_LEN + header.length as usize;
        let (frame, body) = (input.get(..end)?, input.get(HEADER_LEN..end)?);
        if let Err(refusal) = self.check_header(from, &header) {
            return Some(Err(refusal));
        }
        self.learn_version(&header);
        self.counters.of_mut(from).count(header.opcode);
        match self.on_client_frame(&header, body, now) {
            Ok(Keep::Forward) => self.out.to_server.extend_from_slice(frame),
            Ok(Keep::Drop) => {}
            Ok(Keep::Park { decided }) => {
                self.client_unit.hold(frame);
                self.park(header, body.to_vec(), decided);
            }
            Err(refusal) => return Some(Err(refusal)),
        }
        if self.closing {
            return Some(Err(Fed::Replace));
        }
        self.after_frame(from, &header);
        Some(Ok(end))
    }

    pub(super) fn reader(&self, from: Direction) -> &FrameReader {
        match from {
            Direction::ClientToServer => &self.client,
            Direction::ServerToClient => &self.server,
        }
    }

    pub(super) fn unit_and_output(&mut self, from: Direction) -> (&mut Unit, &mut Vec<u8>) {
        match from {
            Direction::ClientToServer => (&mut self.client_unit, &mut self.out.to_server),
            Direction::ServerToClient => (&mut self.server_unit, &mut self.out.to_client),
        }
    }

    /// Learns the version, and asks for the bodies the session reads: STARTUP (compression),
    /// every request and handshake answer while holding, and responses to pending requests.
    pub(super) fn on_header(&mut self, from: Direction, header: &Header, holding: bool) {
        self.learn_version(header);
        if self.wants_body(from, header, holding) {
            match from {
                Direction::ClientToServer => self.client.capture_body(),
                Direction::ServerToClient => self.server.capture_body(),
            }
        }
    }

    /// The connection speaks the version of its first frame.
    pub(super) fn learn_version(&mut self, header: &Header) {
        if self.version.is_none() {
            self.version = Some(header.version);
        }
    }

    /// Whether the session reads the body of a frame: STARTUP (compression), every request
    /// and handshake answer while holding, responses to pending requests.
    pub(super) fn wants_body(&self, from: Direction, header: &Header, holding: bool) -> bool {
        match from {
            Direction::ClientToServer => {
                header.opcode == Opcode::Startup
                    || (holding
                        && (self.client.in_segments() || self.needs_request_body(header.opcode)))
            }
            Direction::ServerToClient => {
                (holding && (self.server.in_segments() || header.length <= 64 * 1024))
                    || (header.opcode == Opcode::Result && self.is_pending(header.stream))
                    || (header.opcode == Opcode::Error
                        && (self.audit_awaits(header.stream)
                            || (self.streams.contains(header.stream) && self.meter().is_some())))
            }
        }
    }

    /// A whole frame seen while only watching.
    pub(super) fn on_watched_frame(&mut self, from: Direction, header: &Header, captured: bool) {
        if from == Direction::ClientToServer && header.opcode == Opcode::Startup && captured {
            let body = core::mem::take(&mut self.scratch);
            self.on_startup(header, &body);
            self.scratch = body;
        }
        if from == Direction::ServerToClient {
            let body = core::mem::take(&mut self.scratch);
            self.on_response(header, captured.then_some(&body[..]));
            self.scratch = body;
        }
        self.after_frame(from, header);
    }

    /// Framing changes that follow a frame.
    pub(super) fn after_frame(&mut self, from: Direction, header: &Header) {
        let answers_startup = matches!(header.opcode, Opcode::Ready | Opcode::Authenticate);
        if from == Direction::ServerToClient && !self.server_started && answers_startup {
            self.server_started = true;
            if header.version >= 5 {
                self.server
                    .start_segments(self.compression == Compression::Lz4);
            }
            if self.auth == AuthState::PassThrough {
                // The client sees this very answer: it switches too.
                self.client_started = true;
                if header.version >= 5 {
                    self.client
                        .start_segments(self.compression == Compression::Lz4);
                }
                if header.opcode == Opcode::Ready {
                    self.open_limits();
                }
            }
        }
        if from == Direction::ServerToClient
            && header.opcode == Opcode::AuthSuccess
            && self.auth == AuthState::PassThrough
        {
            self.open_limits();
        }
    }

    /// The client was sent READY or AUTHENTICATE by the proxy: in v5 it speaks segments now.
    pub(super) fn client_started(&mut self) {
        if !self.client_started {
            self.client_started = true;
            if self.version.unwrap_or(0) >= 5 {
                self.client
                    .start_segments(self.compression == Compression::Lz4);
            }
        }
    }

    /// After authentication, frames may be as large as `max_frame_size`.
    pub(super) fn open_limits(&mut self) {
        self.client.set_max_body(self.config.limits.max_frame_size);
        self.server.set_max_body(self.config.limits.max_frame_size);
    }

    /// STARTUP names the compression both directions use afterwards.
    pub(super) fn on_startup(&mut self, header: &Header, body: &[u8]) {
        self.compression = startup_compression(body);
        if header.version < 5 {
            self.client.set_compression(self.compression);
            self.server.set_compression(self.compression);
        }
    }

    /// How the proxy writes to the client right now.
    pub(super) fn client_framing(&self) -> Framing {
        self.framing(self.client_started)
    }

    pub(super) fn framing(&self, started: bool) -> Framing {
        let version = self.version.unwrap_or(4);
        if version >= 5 {
            if started {
                Framing::v5_segments(self.compression == Compression::Lz4)
            } else {
                Framing::envelopes(version)
            }
        } else if self.compression != Compression::None {
            Framing::compressed(version, self.compression)
        } else {
            Framing::envelopes(version)
        }
    }

    /// Queues an answer of the proxy's own to the client: at once when the server's stream
    /// toward the client is between frames, else as soon as it is.
    pub(super) fn answer_client(&mut self, write: impl FnOnce(&Framing, &mut Vec<u8>)) {
        let framing = self.client_framing();
        // Held server bytes go out in whole frames; watched ones as they came.
        let at_boundary =
            self.auth.holds_server() || !self.server_unit.is_empty() || self.server.at_boundary();
        if at_boundary && self.out.deferred.is_empty() {
            write(&framing, &mut self.out.to_client);
        } else {
            write(&framing, &mut self.out.deferred);
        }
    }

    /// After the handshake: its frames (a token, the server's answers) grew buffers that
    /// requests rarely need; an idle connection should not keep them. Buffers in use stay,
    /// and are freed at the next call.
    pub(super) fn release_handshake_buffers(&mut self) {
        if !self.client_unit.is_empty() || !self.server_unit.is_empty() {
            return;
        }
        self.release_after_login = false;
        self.client.release_buffers();
        self.server.release_buffers();
        self.client_unit.release();
        self.server_unit.release();
        self.scratch = Vec::new();
        if self.out.deferred.is_empty() {
            self.out.deferred = Vec::new();
        }
    }
}

/// What an [`Event`] means to the session, without borrowing the reader: a captured body
/// is copied into the session's scratch buffer.
enum Step {
    NeedMore,
    Header(Header),
    /// A whole frame; whether its body was captured (into the scratch buffer).
    Frame(Header, bool),
    Segment,
}

impl Step {
    fn of(event: Event<'_>, scratch: &mut Vec<u8>) -> Step {
        match event {
            Event::NeedMore => Step::NeedMore,
            Event::Header(header) => Step::Header(header),
            Event::Frame { header, body } => {
                scratch.clear();
                if let Some(body) = body {
                    scratch.extend_from_slice(body);
                }
                Step::Frame(header, body.is_some())
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
