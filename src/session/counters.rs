//! Per-session counters of frames and segments, per direction and opcode.

use crate::codec::{Direction, Opcode};

/// Number of opcodes of the protocol (0x00 ERROR to 0x10 AUTH_SUCCESS).
const OPCODES: usize = 0x11;

/// Counters of one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Whole envelopes (frames) seen.
    pub frames: u64,
    /// Whole v5 segments seen (each with both CRCs verified).
    pub segments: u64,
    by_opcode: [u64; OPCODES],
}

impl DirectionCounters {
    pub(super) fn count(&mut self, opcode: Opcode) {
        self.frames += 1;
        if let Some(n) = self.by_opcode.get_mut(opcode as usize) {
            *n += 1;
        }
    }

    /// Frames seen with this opcode.
    pub fn of(&self, opcode: Opcode) -> u64 {
        self.by_opcode.get(opcode as usize).copied().unwrap_or(0)
    }
}

/// Counters of both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// What the client sent.
    pub client: DirectionCounters,
    /// What the server sent.
    pub server: DirectionCounters,
}

impl Counters {
    pub(super) fn of_mut(&mut self, from: Direction) -> &mut DirectionCounters {
        match from {
            Direction::ClientToServer => &mut self.client,
            Direction::ServerToClient => &mut self.server,
        }
    }
}
