//! Errors of the codec. Every failure of the data path is a value, never a panic.

use core::fmt;

use super::direction::Direction;

/// Why the codec refused some bytes. The session decides what to do with it: most errors close the
/// connection with an error-log line; [`CodecError::UnsupportedVersion`] is answered first with a
/// protocol error (see [`crate::codec::encode::write_unsupported_version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The envelope's version (low 7 bits of the first byte) is not 3, 4 or 5.
    UnsupportedVersion { version: u8 },
    /// The direction bit of the envelope does not match the reader's direction.
    WrongDirection { expected: Direction },
    /// The opcode is not one of the protocol's opcodes.
    UnknownOpcode(u8),
    /// The envelope's body length is above the reader's limit.
    FrameTooLarge { length: u32, max: u32 },
    /// A compressed body claims to expand beyond the limit; refused before allocating.
    DecompressedTooLarge { length: u64, max: u32 },
    /// The body has the COMPRESSION flag but no compression was negotiated (or it is v5).
    CompressionNotNegotiated,
    /// The compressed data is corrupt.
    Decompression(&'static str),
    /// A v5 segment header failed its CRC24.
    Crc24Mismatch { expected: u32, actual: u32 },
    /// A v5 segment payload failed its CRC32.
    Crc32Mismatch { expected: u32, actual: u32 },
    /// A self-contained v5 segment did not start or end on an envelope boundary.
    SegmentNotWhole,
    /// A message body could not be decoded; names the part that failed.
    Malformed(&'static str),
    /// The reader failed before and accepts no more input.
    Failed,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::UnsupportedVersion { version } => write!(
                f,
                "Invalid or unsupported protocol version ({version}); supported versions are (3/v3, 4/v4, 5/v5)"
            ),
            CodecError::WrongDirection { expected } => {
                write!(f, "envelope direction bit does not match, expected {expected:?}")
            }
            CodecError::UnknownOpcode(op) => write!(f, "unknown opcode 0x{op:02x}"),
            CodecError::FrameTooLarge { length, max } => {
                write!(f, "frame body of {length} bytes exceeds the limit of {max} bytes")
            }
            CodecError::DecompressedTooLarge { length, max } => write!(
                f,
                "compressed body claims {length} bytes, above the limit of {max} bytes"
            ),
            CodecError::CompressionNotNegotiated => {
                write!(f, "compressed frame but no compression was negotiated")
            }
            CodecError::Decompression(what) => write!(f, "decompression failed: {what}"),
            CodecError::Crc24Mismatch { expected, actual } => write!(
                f,
                "segment header CRC24 mismatch (wire 0x{expected:06x}, computed 0x{actual:06x})"
            ),
            CodecError::Crc32Mismatch { expected, actual } => write!(
                f,
                "segment payload CRC32 mismatch (wire 0x{expected:08x}, computed 0x{actual:08x})"
            ),
            CodecError::SegmentNotWhole => {
                write!(f, "self-contained segment does not hold whole envelopes")
            }
            CodecError::Malformed(what) => write!(f, "malformed message: {what}"),
            CodecError::Failed => write!(f, "the reader failed earlier"),
        }
    }
}

impl std::error::Error for CodecError {}
