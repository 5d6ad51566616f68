//! The incremental, pull-style reader: one per connection and direction.
//!
//! Feed it the bytes of the stream in chunks split anywhere; it returns one [`Event`] per call
//! together with the number of bytes it consumed. Bodies are skipped by length unless the caller
//! asks for them with [`FrameReader::capture_body`] after the [`Event::Header`] event, so
//! pass-through traffic costs O(headers).

use super::compression::{decompress_body, decompress_lz4_block, Compression};
use super::crc::PayloadCrc;
use super::direction::Direction;
use super::error::CodecError;
use super::header::{check_first_byte, parse_header, Header, HEADER_LEN};
use super::segment::{SegmentHeader, CRC32_LEN, MAX_PAYLOAD};

/// Buffers larger than this are released when the reader goes idle.
const KEEP_CAPACITY: usize = 16 * 1024;
/// Initial reservation for a captured body that is not contiguous in the input.
const INITIAL_BODY_RESERVE: usize = 256 * 1024;

/// What one call of [`FrameReader::next`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Everything given was consumed; call again with more bytes.
    NeedMore,
    /// An envelope header was read (the body not yet). Call [`FrameReader::capture_body`] now to
    /// receive the body with the [`Event::Frame`] event.
    Header(Header),
    /// An envelope is complete. `body` is `Some` only if the body was captured; it is decompressed
    /// when the envelope was compressed (v4), and borrowed from the input when it was contiguous
    /// there, else from the reader's buffer.
    Frame {
        header: Header,
        body: Option<&'a [u8]>,
    },
    /// A v5 segment finished and both its CRCs verified.
    SegmentEnd {
        self_contained: bool,
        payload_len: u32,
        compressed: bool,
    },
}

/// Where a step's body lives; resolved into a slice when the event is returned.
#[derive(Clone, Copy, Debug)]
enum BodyLoc {
    None,
    Input { start: usize, len: usize },
    Plain { start: usize, len: usize },
    Buf,
    Out,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    NeedMore,
    Header(Header),
    Frame(Header, BodyLoc),
    SegmentEnd(SegmentHeader),
}

/// The envelope layer: header accumulation and body skipping or capturing.
#[derive(Clone, Debug, Default)]
struct Env {
    hdr: [u8; HEADER_LEN],
    have: u8,
    current: Option<Header>,
    remaining: u32,
    capture: bool,
    buffering: bool,
}

impl Env {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.current.is_none()
    }
}

#[derive(Clone, Copy)]
struct EnvCfg {
    direction: Direction,
    max_body: u32,
    compression: Compression,
}

#[derive(Default)]
struct Bufs {
    /// A captured body that was not contiguous in one input slice.
    body: Vec<u8>,
    /// A decompressed v4 body.
    out: Vec<u8>,
}

/// Appends the first `take` bytes of `input` to the `*have` bytes already gathered in `buf`
/// (a header or a trailer that may arrive in pieces). `what` names it in the error, which
/// the callers' bounds rule out.
#[inline]
fn append(
    buf: &mut [u8],
    have: &mut u8,
    input: &[u8],
    take: usize,
    what: &'static str,
) -> Result<(), CodecError> {
    let at = usize::from(*have);
    match (buf.get_mut(at..at + take), input.get(..take)) {
        (Some(dst), Some(src)) => dst.copy_from_slice(src),
        _ => return Err(CodecError::Malformed(what)),
    }
    *have = (at + take) as u8;
    Ok(())
}

/// One step of the envelope layer over `input`. Returns bytes consumed and what happened.
fn env_step(
    env: &mut Env,
    bufs: &mut Bufs,
    cfg: &EnvCfg,
    input: &[u8],
) -> Result<(usize, Step), CodecError> {
    let Some(h) = env.current else {
        let have = usize::from(env.have);
        let take = (HEADER_LEN - have).min(input.len());
        if take == 0 {
            return Ok((0, Step::NeedMore));
        }
        if have == 0 {
            if let Some(first) = input.first() {
                check_first_byte(*first, cfg.direction)?;
            }
        }
        append(&mut env.hdr, &mut env.have, input, take, "envelope header")?;
        if usize::from(env.have) < HEADER_LEN {
            return Ok((take, Step::NeedMore));
        }
        let h = parse_header(&env.hdr, cfg.direction)?;
        if h.length > cfg.max_body {
            return Err(CodecError::FrameTooLarge {
                length: h.length,
                max: cfg.max_body,
            });
        }
        if h.flags.compression() && cfg.compression == Compression::None {
            return Err(CodecError::CompressionNotNegotiated);
        }
        env.have = 0;
        env.current = Some(h);
        env.remaining = h.length;
        env.capture = false;
        env.buffering = false;
        return Ok((take, Step::Header(h)));
    };
    let rem = env.remaining as usize;
    if !env.capture {
        let skip = rem.min(input.len());
        env.remaining -= skip as u32;
        if env.remaining > 0 {
            return Ok((skip, Step::NeedMore));
        }
        env.current = None;
        return Ok((skip, Step::Frame(h, BodyLoc::None)));
    }
    let (consumed, raw) = if !env.buffering && input.len() >= rem {
        (rem, BodyLoc::Input { start: 0, len: rem })
    } else {
        if !env.buffering {
            env.buffering = true;
            bufs.body.clear();
            bufs.body
                .reserve((h.length as usize).min(INITIAL_BODY_RESERVE));
        }
        let take = rem.min(input.len());
        bufs.body
            .extend_from_slice(input.get(..take).unwrap_or_default());
        env.remaining -= take as u32;
        if env.remaining > 0 {
            return Ok((take, Step::NeedMore));
        }
        (take, BodyLoc::Buf)
    };
    env.current = None;
    env.capture = false;
    env.buffering = false;
    if h.flags.compression() {
        let raw_bytes = match raw {
            BodyLoc::Input { start, len } => input.get(start..start + len).unwrap_or_default(),
            _ => &bufs.body[..],
        };
        decompress_body(cfg.compression, raw_bytes, cfg.max_body, &mut bufs.out)?;
        return Ok((consumed, Step::Frame(h, BodyLoc::Out)));
    }
    Ok((consumed, Step::Frame(h, raw)))
}

/// Offsets a body location that is relative to a sub-slice of the input.
fn shift(step: Step, by: usize) -> Step {
    relocate(step, by, |start, len| BodyLoc::Input { start, len })
}

/// Offsets a body location that is relative to a sub-slice of the decompressed segment
/// payload, and places it there.
fn to_plain(step: Step, by: usize) -> Step {
    relocate(step, by, |start, len| BodyLoc::Plain { start, len })
}

/// A frame's body location in the slice that `env_step` read, `by` bytes on, placed by
/// `place(start, len)`; any other step unchanged.
#[inline]
fn relocate(step: Step, by: usize, place: impl FnOnce(usize, usize) -> BodyLoc) -> Step {
    match step {
        Step::Frame(h, BodyLoc::Input { start, len }) => Step::Frame(h, place(start + by, len)),
        other => other,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Envelopes,
    Segments { lz4: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Header,
    Payload,
    Trailer,
    Walk,
}

/// The v5 segment layer.
#[derive(Clone)]
struct Seg {
    phase: Phase,
    buf: [u8; 8],
    have: u8,
    hdr: SegmentHeader,
    remaining: u32,
    crc: PayloadCrc,
    crc_value: u32,
    walk_pos: usize,
}

impl Seg {
    /// [`append`] to the segment header or trailer gathered so far.
    fn append(&mut self, input: &[u8], take: usize, what: &'static str) -> Result<(), CodecError> {
        append(&mut self.buf, &mut self.have, input, take, what)
    }

    fn new() -> Self {
        Seg {
            phase: Phase::Header,
            buf: [0; 8],
            have: 0,
            hdr: SegmentHeader {
                payload_len: 0,
                uncompressed_len: 0,
                self_contained: false,
                lz4: false,
            },
            remaining: 0,
            crc: PayloadCrc::new(),
            crc_value: 0,
            walk_pos: 0,
        }
    }
}

/// Reads one direction of a CQL connection: v3/v4 envelopes, then (v5) segments.
pub struct FrameReader {
    direction: Direction,
    max_body: u32,
    compression: Compression,
    mode: Mode,
    pending_segments: Option<bool>,
    env: Env,
    seg: Seg,
    bufs: Bufs,
    /// Compressed payload of the current lz4 segment.
    seg_buf: Vec<u8>,
    /// Decompressed payload of the current lz4 segment.
    plain: Vec<u8>,
    /// Offset of the current envelope in its segment's payload, when it starts in that segment.
    env_offset: Option<u32>,
    failed: bool,
}

impl FrameReader {
    /// A reader for `direction` refusing bodies longer than `max_body`. Allocates nothing.
    pub fn new(direction: Direction, max_body: u32) -> Self {
        FrameReader {
            direction,
            max_body,
            compression: Compression::None,
            mode: Mode::Envelopes,
            pending_segments: None,
            env: Env::default(),
            seg: Seg::new(),
            bufs: Bufs::default(),
            seg_buf: Vec::new(),
            plain: Vec::new(),
            env_offset: None,
            failed: false,
        }
    }

    /// Changes the body limit, from the next envelope header on.
    pub fn set_max_body(&mut self, max_body: u32) {
        self.max_body = max_body;
    }

    /// Sets the v4 body compression (negotiated by STARTUP); used for envelopes with the
    /// COMPRESSION flag. Not used inside v5 segments.
    pub fn set_compression(&mut self, c: Compression) {
        self.compression = c;
    }

    /// Switches to v5 segment framing from the next byte fed (from the end of the current
    /// envelope if one is in progress). `lz4` selects the 5-byte lz4 segment header.
    pub fn start_segments(&mut self, lz4: bool) {
        if self.mode != Mode::Envelopes {
            return;
        }
        if self.env.at_boundary() {
            self.mode = Mode::Segments { lz4 };
            self.seg = Seg::new();
        } else {
            self.pending_segments = Some(lz4);
        }
    }

    /// Asks for the body of the envelope whose [`Event::Header`] was just returned. Ignored when no
    /// envelope body is pending or some of it was already skipped.
    pub fn capture_body(&mut self) {
        if let Some(h) = self.env.current {
            if self.env.remaining == h.length && !self.env.buffering {
                self.env.capture = true;
            }
        }
    }

    /// The reader's direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether v5 segment framing is in use.
    pub fn in_segments(&self) -> bool {
        matches!(self.mode, Mode::Segments { .. })
    }

    /// Whether the reader is between envelopes (and, in v5, between segments).
    pub fn at_boundary(&self) -> bool {
        self.env.at_boundary()
            && (self.mode == Mode::Envelopes
                || (self.seg.phase == Phase::Header && self.seg.have == 0))
    }

    /// v3/v4, between frames: the header of the frame that `input` holds whole from its
    /// start, checked as [`FrameReader::next`] checks it, without reading it. The caller
    /// that acts on it skips those `HEADER_LEN + length` bytes itself, and the reader stays
    /// between frames; it is the cheap path for frames whose body no one reads. `None`
    /// when the frame is not whole, not valid (`next` then says why), or the reader is in
    /// segments or about to switch to them.
    pub fn whole_frame(&self, input: &[u8]) -> Option<Header> {
        if self.mode != Mode::Envelopes
            || self.pending_segments.is_some()
            || self.failed
            || !self.env.at_boundary()
        {
            return None;
        }
        let bytes: &[u8; HEADER_LEN] = input.get(..HEADER_LEN)?.try_into().ok()?;
        check_first_byte(bytes[0], self.direction).ok()?;
        let h = parse_header(bytes, self.direction).ok()?;
        if h.length > self.max_body
            || (h.flags.compression() && self.compression == Compression::None)
            || input.len() - HEADER_LEN < h.length as usize
        {
            return None;
        }
        Some(h)
    }

    /// Frees the buffers it grew (bodies that spanned reads, decompressed bodies and
    /// segments) when it is between frames, so that an idle connection holds none: after the
    /// handshake, whose frames (a token) are larger than most requests.
    pub fn release_buffers(&mut self) {
        if self.at_boundary() {
            self.bufs = Bufs::default();
            self.seg_buf = Vec::new();
            self.plain = Vec::new();
        }
    }

    /// The header of the segment being read (v5), once its CRC24 verified.
    pub fn current_segment(&self) -> Option<SegmentHeader> {
        match (self.mode, self.seg.phase) {
            (Mode::Segments { .. }, Phase::Payload | Phase::Trailer | Phase::Walk) => {
                Some(self.seg.hdr)
            }
            _ => None,
        }
    }

    /// After [`Event::Header`] in v5: the offset of that envelope in its segment's (decompressed)
    /// payload, if the envelope starts in the current segment.
    pub fn envelope_offset_in_payload(&self) -> Option<u32> {
        self.env_offset
    }

    /// While an lz4-compressed segment's envelopes are being returned: its decompressed payload
    /// (CRC32 already verified). Useful to re-frame the segment.
    pub fn decompressed_payload(&self) -> Option<&[u8]> {
        (self.seg.phase == Phase::Walk).then_some(&self.plain[..])
    }

    /// Consumes bytes from `input`; returns (bytes consumed, event). Call again with the rest.
    /// After an error the reader refuses all further input.
    pub fn next<'a>(&'a mut self, input: &'a [u8]) -> Result<(usize, Event<'a>), CodecError> {
        if self.failed {
            return Err(CodecError::Failed);
        }
        match self.step(input) {
            Ok((n, step)) => Ok((n, self.resolve(step, input)?)),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn resolve<'a>(&'a self, step: Step, input: &'a [u8]) -> Result<Event<'a>, CodecError> {
        Ok(match step {
            Step::NeedMore => Event::NeedMore,
            Step::Header(h) => Event::Header(h),
            Step::SegmentEnd(s) => Event::SegmentEnd {
                self_contained: s.self_contained,
                payload_len: s.payload_len,
                compressed: s.is_compressed(),
            },
            Step::Frame(header, loc) => {
                let body = match loc {
                    BodyLoc::None => None,
                    BodyLoc::Input { start, len } => Some(
                        input
                            .get(start..start + len)
                            .ok_or(CodecError::Malformed("body location"))?,
                    ),
                    BodyLoc::Plain { start, len } => Some(
                        self.plain
                            .get(start..start + len)
                            .ok_or(CodecError::Malformed("body location"))?,
                    ),
                    BodyLoc::Buf => Some(&self.bufs.body[..]),
                    BodyLoc::Out => Some(&self.bufs.out[..]),
                };
                Event::Frame { header, body }
            }
        })
    }

    /// Releases large buffers when nothing is in progress.
    fn release_if_idle(&mut self) {
        if !self.env.buffering && self.bufs.body.capacity() > KEEP_CAPACITY {
            self.bufs.body = Vec::new();
        }
        if self.bufs.out.capacity() > KEEP_CAPACITY {
            self.bufs.out = Vec::new();
        }
        if self.seg.phase == Phase::Header {
            if self.seg_buf.capacity() > KEEP_CAPACITY {
                self.seg_buf = Vec::new();
            }
            if self.plain.capacity() > KEEP_CAPACITY {
                self.plain = Vec::new();
            }
        }
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Step), CodecError> {
        // The decompressed body of the previous event is no longer borrowed.
        if self.bufs.out.capacity() > KEEP_CAPACITY {
            self.bufs.out = Vec::new();
        }
        let mut pos = 0usize;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            let lz4 = match self.mode {
                Mode::Envelopes => {
                    let cfg = EnvCfg {
                        direction: self.direction,
                        max_body: self.max_body,
                        compression: self.compression,
                    };
                    let (n, step) = env_step(&mut self.env, &mut self.bufs, &cfg, rest)?;
                    let step = shift(step, pos);
                    pos += n;
                    if let Step::Frame(..) = step {
                        if let Some(lz4) = self.pending_segments.take() {
                            self.mode = Mode::Segments { lz4 };
                            self.seg = Seg::new();
                        }
                    }
                    if let Step::NeedMore = step {
                        if self.env.at_boundary() {
                            self.release_if_idle();
                        }
                    }
                    return Ok((pos, step));
                }
                Mode::Segments { lz4 } => lz4,
            };
            let cfg = EnvCfg {
                direction: self.direction,
                max_body: self.max_body,
                compression: Compression::None,
            };
            match self.seg.phase {
                Phase::Header => {
                    let hl = SegmentHeader::wire_header_len(lz4);
                    let have = usize::from(self.seg.have);
                    let take = (hl - have).min(rest.len());
                    if take == 0 {
                        if have == 0 && self.env.at_boundary() {
                            self.release_if_idle();
                        }
                        return Ok((pos, Step::NeedMore));
                    }
                    self.seg.append(rest, take, "segment header")?;
                    pos += take;
                    if usize::from(self.seg.have) < hl {
                        return Ok((pos, Step::NeedMore));
                    }
                    let hdr =
                        SegmentHeader::decode(self.seg.buf.get(..hl).unwrap_or_default(), lz4)?;
                    if hdr.self_contained && !self.env.at_boundary() {
                        return Err(CodecError::SegmentNotWhole);
                    }
                    if hdr.is_compressed() {
                        self.seg_buf.clear();
                        self.seg_buf.reserve(hdr.payload_len as usize);
                    }
                    self.seg.hdr = hdr;
                    self.seg.have = 0;
                    self.seg.remaining = hdr.payload_len;
                    self.seg.crc = PayloadCrc::new();
                    self.seg.phase = Phase::Payload;
                }
                Phase::Payload => {
                    let lim = (self.seg.remaining as usize).min(rest.len());
                    let part = rest.get(..lim).unwrap_or_default();
                    if self.seg.hdr.is_compressed() {
                        self.seg_buf.extend_from_slice(part);
                        self.seg.crc.update(part);
                        self.seg.remaining -= lim as u32;
                        pos += lim;
                        if self.seg.remaining > 0 {
                            return Ok((pos, Step::NeedMore));
                        }
                        self.seg.crc_value = self.seg.crc.clone().finish();
                        self.seg.phase = Phase::Trailer;
                        continue;
                    }
                    let at = self.seg.hdr.payload_len - self.seg.remaining;
                    let (n, step) = env_step(&mut self.env, &mut self.bufs, &cfg, part)?;
                    self.seg.crc.update(part.get(..n).unwrap_or_default());
                    self.seg.remaining -= n as u32;
                    let step = shift(step, pos);
                    pos += n;
                    match step {
                        Step::NeedMore => {
                            if self.seg.remaining > 0 {
                                return Ok((pos, Step::NeedMore));
                            }
                            self.seg.crc_value = self.seg.crc.clone().finish();
                            self.seg.phase = Phase::Trailer;
                        }
                        Step::Header(_) => {
                            self.env_offset = (at + n as u32).checked_sub(HEADER_LEN as u32);
                            return Ok((pos, step));
                        }
                        _ => return Ok((pos, step)),
                    }
                }
                Phase::Trailer => {
                    let have = usize::from(self.seg.have);
                    let take = (CRC32_LEN - have).min(rest.len());
                    self.seg.append(rest, take, "segment trailer")?;
                    pos += take;
                    if usize::from(self.seg.have) < CRC32_LEN {
                        return Ok((pos, Step::NeedMore));
                    }
                    let [a, b, c, d, ..] = self.seg.buf;
                    let wire = u32::from_le_bytes([a, b, c, d]);
                    if wire != self.seg.crc_value {
                        return Err(CodecError::Crc32Mismatch {
                            expected: wire,
                            actual: self.seg.crc_value,
                        });
                    }
                    self.seg.have = 0;
                    let hdr = self.seg.hdr;
                    if hdr.is_compressed() {
                        decompress_lz4_block(
                            &self.seg_buf,
                            hdr.uncompressed_len,
                            MAX_PAYLOAD,
                            &mut self.plain,
                        )?;
                        self.seg.walk_pos = 0;
                        self.seg.phase = Phase::Walk;
                        continue;
                    }
                    if hdr.self_contained && !self.env.at_boundary() {
                        return Err(CodecError::SegmentNotWhole);
                    }
                    self.seg.phase = Phase::Header;
                    return Ok((pos, Step::SegmentEnd(hdr)));
                }
                Phase::Walk => {
                    let at = self.seg.walk_pos;
                    let part = self.plain.get(at..).unwrap_or_default();
                    let (n, step) = env_step(&mut self.env, &mut self.bufs, &cfg, part)?;
                    self.seg.walk_pos = at + n;
                    match to_plain(step, at) {
                        Step::NeedMore => {
                            let hdr = self.seg.hdr;
                            if hdr.self_contained && !self.env.at_boundary() {
                                return Err(CodecError::SegmentNotWhole);
                            }
                            self.seg.phase = Phase::Header;
                            return Ok((pos, Step::SegmentEnd(hdr)));
                        }
                        step @ Step::Header(_) => {
                            self.env_offset = ((at + n) as u32).checked_sub(HEADER_LEN as u32);
                            return Ok((pos, step));
                        }
                        step => return Ok((pos, step)),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::compression::compress_body;
    use crate::codec::header::{Flags, Opcode};
    use crate::codec::segment::write_segment;

    fn envelope(
        version: u8,
        response: bool,
        flags: u8,
        stream: i16,
        op: Opcode,
        body: &[u8],
    ) -> Vec<u8> {
        let h = Header {
            version,
            is_response: response,
            flags: Flags(flags),
            stream,
            opcode: op,
            length: body.len() as u32,
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    /// Feeds `bytes` in chunks of `chunk` bytes, capturing every body. Returns (header, body) per
    /// frame and the segment ends.
    fn run(r: &mut FrameReader, bytes: &[u8], chunk: usize) -> (Vec<(Header, Vec<u8>)>, usize) {
        let mut frames = Vec::new();
        let mut segs = 0;
        for c in bytes.chunks(chunk) {
            let mut off = 0;
            loop {
                let (n, ev) = r.next(&c[off..]).unwrap();
                off += n;
                match ev {
                    Event::NeedMore => break,
                    Event::Header(_) => r.capture_body(),
                    Event::Frame { header, body } => frames.push((header, body.unwrap().to_vec())),
                    Event::SegmentEnd { .. } => segs += 1,
                }
            }
            assert_eq!(off, c.len());
        }
        (frames, segs)
    }

    #[test]
    fn envelopes_in_any_chunking() {
        let mut bytes = envelope(4, false, 0, 0, Opcode::Options, b"");
        bytes.extend(envelope(4, false, 0, 1, Opcode::Query, b"0123456789abcdef"));
        bytes.extend(envelope(4, false, 0, 2, Opcode::Register, b"xy"));
        for chunk in [1, 2, 5, 9, 10, 100] {
            let mut r = FrameReader::new(Direction::ClientToServer, 1024);
            let (frames, _) = run(&mut r, &bytes, chunk);
            assert_eq!(frames.len(), 3);
            assert_eq!(frames[1].1, b"0123456789abcdef");
            assert_eq!(frames[2].0.stream, 2);
            assert!(r.at_boundary());
        }
    }

    #[test]
    fn skipped_bodies_are_not_buffered() {
        let body = vec![0u8; 1 << 20];
        let bytes = envelope(4, true, 0, 5, Opcode::Result, &body);
        let mut r = FrameReader::new(Direction::ServerToClient, 16 << 20);
        let mut off = 0;
        let mut frames = 0;
        for c in bytes.chunks(65536) {
            let mut o = 0;
            loop {
                let (n, ev) = r.next(&c[o..]).unwrap();
                o += n;
                match ev {
                    Event::NeedMore => break,
                    Event::Frame { body, .. } => {
                        assert!(body.is_none());
                        frames += 1
                    }
                    _ => {}
                }
            }
            off += o;
        }
        assert_eq!((off, frames), (bytes.len(), 1));
        assert_eq!(r.bufs.body.capacity(), 0);
    }

    #[test]
    fn contiguous_captured_body_is_borrowed_from_input() {
        let bytes = envelope(4, false, 0, 1, Opcode::Query, b"abc");
        let mut r = FrameReader::new(Direction::ClientToServer, 1024);
        let (n, ev) = r.next(&bytes).unwrap();
        assert_eq!(
            (n, ev),
            (
                9,
                Event::Header(
                    parse_header(bytes[..9].try_into().unwrap(), Direction::ClientToServer)
                        .unwrap()
                )
            )
        );
        r.capture_body();
        let (n, ev) = r.next(&bytes[9..]).unwrap();
        assert_eq!(n, 3);
        match ev {
            Event::Frame { body: Some(b), .. } => assert_eq!(b.as_ptr(), bytes[9..].as_ptr()),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.bufs.body.capacity(), 0);
    }

    #[test]
    fn frame_too_large_and_unsupported_version() {
        let bytes = envelope(4, false, 0, 1, Opcode::Query, &[0u8; 100]);
        let mut r = FrameReader::new(Direction::ClientToServer, 99);
        assert_eq!(
            r.next(&bytes),
            Err(CodecError::FrameTooLarge {
                length: 100,
                max: 99
            })
        );
        assert_eq!(r.next(&bytes), Err(CodecError::Failed));
        let mut r = FrameReader::new(Direction::ClientToServer, 99);
        assert_eq!(
            r.next(&[0x42]),
            Err(CodecError::UnsupportedVersion { version: 0x42 })
        );
        let mut r = FrameReader::new(Direction::ClientToServer, 99);
        assert_eq!(
            r.next(&[0x02, 0, 0]),
            Err(CodecError::UnsupportedVersion { version: 2 })
        );
    }

    #[test]
    fn v4_compressed_bodies_are_decompressed_when_captured() {
        for c in [Compression::Lz4, Compression::Snappy] {
            let plain = b"SELECT * FROM ks.t WHERE k = 1 AND k = 1 AND k = 1".to_vec();
            let mut z = Vec::new();
            compress_body(c, &plain, &mut z);
            let bytes = envelope(4, false, Flags::COMPRESSION, 3, Opcode::Query, &z);
            for chunk in [1, 7, 1000] {
                let mut r = FrameReader::new(Direction::ClientToServer, 1024);
                r.set_compression(c);
                let (frames, _) = run(&mut r, &bytes, chunk);
                assert_eq!(frames[0].1, plain);
            }
            // Not negotiated: refused.
            let mut r = FrameReader::new(Direction::ClientToServer, 1024);
            assert_eq!(
                r.next(&bytes).map(|x| x.0),
                Err(CodecError::CompressionNotNegotiated)
            );
            // Claiming more than max_body: refused.
            let mut r = FrameReader::new(Direction::ClientToServer, 20);
            r.set_compression(c);
            let mut z2 = Vec::new();
            compress_body(c, &[b'a'; 100], &mut z2);
            let bytes = envelope(4, false, Flags::COMPRESSION, 3, Opcode::Query, &z2);
            let (_, ev) = r.next(&bytes).unwrap();
            assert!(matches!(ev, Event::Header(_)));
            r.capture_body();
            assert!(matches!(
                r.next(&bytes[9..]),
                Err(CodecError::DecompressedTooLarge { .. })
            ));
        }
    }

    fn segments_stream(lz4: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
        let e1 = envelope(5, false, 0, 1, Opcode::Query, &[b'q'; 300]);
        let e2 = envelope(5, false, 0, 2, Opcode::Prepare, b"SELECT 1");
        let big = envelope(5, false, 0, 3, Opcode::Execute, &vec![7u8; 300_000]);
        let mut bytes = Vec::new();
        let mut both = e1.clone();
        both.extend_from_slice(&e2);
        write_segment(&both, true, lz4, &mut bytes);
        for part in big.chunks(MAX_PAYLOAD as usize) {
            write_segment(part, false, lz4, &mut bytes);
        }
        (bytes, vec![e1, e2, big])
    }

    #[test]
    fn v5_segments_plain_and_lz4_any_chunking() {
        for lz4 in [false, true] {
            let (bytes, envs) = segments_stream(lz4);
            for chunk in [1, 3, 8, 1000, 65536, 1 << 20] {
                let mut r = FrameReader::new(Direction::ClientToServer, 1 << 20);
                r.start_segments(lz4);
                let (frames, segs) = run(&mut r, &bytes, chunk);
                assert_eq!(segs, 4);
                assert_eq!(frames.len(), 3);
                for (f, e) in frames.iter().zip(&envs) {
                    assert_eq!(&f.1[..], &e[9..]);
                }
                assert!(r.at_boundary());
            }
        }
    }

    #[test]
    fn v5_bad_crc32_and_crc24_are_errors() {
        for lz4 in [false, true] {
            let (bytes, _) = segments_stream(lz4);
            let hl = SegmentHeader::wire_header_len(lz4);
            // Flip a payload byte of the first segment.
            let mut bad = bytes.clone();
            bad[hl + 20] ^= 1;
            let mut r = FrameReader::new(Direction::ClientToServer, 1 << 20);
            r.start_segments(lz4);
            let mut res = Ok(());
            let mut off = 0;
            while off < bad.len() {
                match r.next(&bad[off..]) {
                    Ok((n, Event::NeedMore)) => off += n,
                    Ok((n, _)) => off += n,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            assert!(
                matches!(
                    res,
                    Err(CodecError::Crc32Mismatch { .. }) | Err(CodecError::Decompression(_))
                ),
                "{res:?}"
            );
            let mut bad = bytes.clone();
            bad[hl - 1] ^= 0x80;
            let mut r = FrameReader::new(Direction::ClientToServer, 1 << 20);
            r.start_segments(lz4);
            assert!(matches!(
                r.next(&bad),
                Err(CodecError::Crc24Mismatch { .. })
            ));
        }
    }

    #[test]
    fn self_contained_segment_must_hold_whole_envelopes() {
        let e = envelope(5, false, 0, 1, Opcode::Query, b"abcdef");
        let mut bytes = Vec::new();
        write_segment(&e[..10], true, false, &mut bytes);
        let mut r = FrameReader::new(Direction::ClientToServer, 1024);
        r.start_segments(false);
        let mut off = 0;
        let err = loop {
            match r.next(&bytes[off..]) {
                Ok((n, Event::NeedMore)) => {
                    off += n;
                    if off == bytes.len() {
                        break None;
                    }
                }
                Ok((n, _)) => off += n,
                Err(e) => break Some(e),
            }
        };
        assert_eq!(err, Some(CodecError::SegmentNotWhole));
    }

    #[test]
    fn start_segments_mid_envelope_takes_effect_after_it() {
        let first = envelope(5, true, 0, 1, Opcode::Authenticate, b"xx");
        let next = envelope(
            5,
            true,
            0,
            2,
            Opcode::AuthSuccess,
            &[0xff, 0xff, 0xff, 0xff],
        );
        let mut bytes = first.clone();
        write_segment(&next, true, false, &mut bytes);
        let mut r = FrameReader::new(Direction::ServerToClient, 1024);
        let (n, ev) = r.next(&bytes).unwrap();
        assert!(matches!(ev, Event::Header(_)));
        r.capture_body();
        r.start_segments(false);
        assert!(!r.in_segments());
        let (frames, segs) = run(&mut r, &bytes[n..], 4);
        assert_eq!((frames.len(), segs), (2, 1));
        assert!(r.in_segments());
    }

    #[test]
    fn buffers_are_released_after_large_frames() {
        let body = vec![1u8; 200_000];
        let bytes = envelope(4, false, 0, 1, Opcode::Query, &body);
        let mut r = FrameReader::new(Direction::ClientToServer, 1 << 20);
        let (frames, _) = run(&mut r, &bytes, 4096);
        assert_eq!(frames[0].1.len(), 200_000);
        let _ = r.next(&[]).unwrap();
        assert!(r.bufs.body.capacity() <= KEEP_CAPACITY);
    }
}
