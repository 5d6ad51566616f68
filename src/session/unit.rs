//! The bytes of one frame (v3/v4) or one run of segments (v5) held until decided.

use crate::codec::encode::Framing;
use crate::codec::segment::write_segments;
use crate::codec::{Flags, Header, Opcode};

/// Buffers larger than this are released once a unit is done.
const KEEP_CAPACITY: usize = 64 * 1024;

/// What is held of the frame or segment run in progress.
#[derive(Default)]
pub(super) struct Unit {
    /// The bytes as they came on the wire.
    raw: Vec<u8>,
    /// v5: the envelopes of the run that go on, in case one is dropped and the run must be
    /// re-framed.
    kept: Vec<u8>,
    /// v5: an envelope of the run was dropped.
    dropped: bool,
}

impl Unit {
    pub(super) fn hold(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// A frame of the unit is whole and decided. Outside segments the frame is the unit: it
    /// goes on as it came, or not at all. Inside segments the run goes on when it ends.
    pub(super) fn frame_done(
        &mut self,
        header: &Header,
        body: &[u8],
        keep: bool,
        in_segments: bool,
        out: &mut Vec<u8>,
    ) {
        if in_segments {
            if keep {
                self.kept.extend_from_slice(&header.to_bytes());
                self.kept.extend_from_slice(body);
            } else {
                self.dropped = true;
            }
        } else {
            if keep {
                if out.is_empty() {
                    // The held frame becomes the output as it is: no copy.
                    core::mem::swap(out, &mut self.raw);
                } else {
                    out.extend_from_slice(&self.raw);
                }
            }
            self.clear();
        }
    }

    /// v3/v4: what is held of the frame in progress goes on now; the rest of it follows as it
    /// comes.
    pub(super) fn pass_to(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.raw);
        self.clear();
    }

    /// A frame of the unit is whole and goes on as another message (a rewritten answer):
    /// outside segments written anew in `framing` (compressed as the connection is), inside
    /// segments kept for the run, which is then re-framed.
    pub(super) fn frame_replaced(
        &mut self,
        header: &Header,
        opcode: Opcode,
        flags: u8,
        body: &[u8],
        framing: &Framing,
        out: &mut Vec<u8>,
    ) {
        if framing.segments {
            let replaced = Header {
                opcode,
                flags: Flags(flags),
                length: u32::try_from(body.len()).unwrap_or(u32::MAX),
                ..*header
            };
            self.kept.extend_from_slice(&replaced.to_bytes());
            self.kept.extend_from_slice(body);
            self.dropped = true;
        } else {
            framing.write_envelope(header.stream, opcode, flags, body, out);
            self.clear();
        }
    }

    /// v3/v4: takes the bytes of the frame just read, which waits elsewhere.
    pub(super) fn take_frame(&mut self) -> Vec<u8> {
        let raw = core::mem::take(&mut self.raw);
        self.clear();
        raw
    }

    /// A run of segments ended on an envelope boundary: it goes on as it came when every
    /// envelope was kept, else re-framed with the kept envelopes (nothing when none is left).
    pub(super) fn run_done(&mut self, lz4: bool, out: &mut Vec<u8>) {
        if !self.dropped {
            out.extend_from_slice(&self.raw);
        } else if !self.kept.is_empty() {
            write_segments(&self.kept, lz4, out);
        }
        self.clear();
    }

    /// Frees its buffers when it holds nothing.
    pub(super) fn release(&mut self) {
        if self.raw.is_empty() && self.kept.is_empty() {
            self.raw = Vec::new();
            self.kept = Vec::new();
        }
    }

    fn clear(&mut self) {
        self.raw.clear();
        self.kept.clear();
        self.dropped = false;
        if self.raw.capacity() > KEEP_CAPACITY {
            self.raw = Vec::new();
        }
        if self.kept.capacity() > KEEP_CAPACITY {
            self.kept = Vec::new();
        }
    }
}
