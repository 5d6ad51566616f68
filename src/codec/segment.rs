//! v5 segment framing: header layout, and writing segments.
//!
//! ```text
//! uncompressed: | 3 bytes LE: payload_len:17 self_contained:1 pad:6 | CRC24 (3 LE) | payload | CRC32 (4 LE) |
//! lz4:          | 5 bytes LE: payload_len:17 uncompressed_len:17 self_contained:1 pad:5 | CRC24 | payload | CRC32 |
//! ```
//! With lz4, `uncompressed_len == 0` means the payload is stored uncompressed.

use super::compression::compress_lz4_block;
use super::crc::{crc24, crc32};
use super::error::CodecError;

/// Largest payload (and uncompressed payload) a segment can carry: 2^17 - 1.
pub const MAX_PAYLOAD: u32 = (1 << 17) - 1;
/// Header length without compression (3) and with lz4 (5), CRC24 not included.
pub const HEADER_LEN_PLAIN: usize = 3;
pub const HEADER_LEN_LZ4: usize = 5;
/// CRC24 and CRC32 trailer sizes.
pub const CRC24_LEN: usize = 3;
pub const CRC32_LEN: usize = 4;

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentHeader {
    /// Payload bytes on the wire.
    pub payload_len: u32,
    /// With lz4: the payload's uncompressed length, 0 when stored uncompressed. Always 0 without lz4.
    pub uncompressed_len: u32,
    pub self_contained: bool,
    /// Whether the connection's segments use the 5-byte lz4 header.
    pub lz4: bool,
}

impl SegmentHeader {
    /// Header length on the wire, CRC24 included (6 or 8).
    pub fn wire_header_len(lz4: bool) -> usize {
        if lz4 {
            HEADER_LEN_LZ4 + CRC24_LEN
        } else {
            HEADER_LEN_PLAIN + CRC24_LEN
        }
    }

    /// Whether the payload must be lz4-decompressed.
    pub fn is_compressed(&self) -> bool {
        self.lz4 && self.uncompressed_len != 0
    }

    /// Decodes a header plus CRC24 (6 or 8 bytes), verifying the CRC24.
    pub fn decode(bytes: &[u8], lz4: bool) -> Result<SegmentHeader, CodecError> {
        let hlen = if lz4 {
            HEADER_LEN_LZ4
        } else {
            HEADER_LEN_PLAIN
        };
        let (head, crc) = match (bytes.get(..hlen), bytes.get(hlen..hlen + CRC24_LEN)) {
            (Some(h), Some(c)) => (h, c),
            _ => return Err(CodecError::Malformed("segment header too short")),
        };
        let mut v: u64 = 0;
        for (i, b) in head.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        let mut wire = 0u32;
        for (i, b) in crc.iter().enumerate() {
            wire |= u32::from(*b) << (8 * i);
        }
        let actual = crc24(head);
        if wire != actual {
            return Err(CodecError::Crc24Mismatch {
                expected: wire,
                actual,
            });
        }
        let payload_len = (v & u64::from(MAX_PAYLOAD)) as u32;
        Ok(if lz4 {
            SegmentHeader {
                payload_len,
                uncompressed_len: ((v >> 17) & u64::from(MAX_PAYLOAD)) as u32,
                self_contained: (v >> 34) & 1 == 1,
                lz4,
            }
        } else {
            SegmentHeader {
                payload_len,
                uncompressed_len: 0,
                self_contained: (v >> 17) & 1 == 1,
                lz4,
            }
        })
    }

    /// Appends the header and its CRC24.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let p = u64::from(self.payload_len & MAX_PAYLOAD);
        let (v, n) = if self.lz4 {
            let u = u64::from(self.uncompressed_len & MAX_PAYLOAD);
            (
                p | (u << 17) | (u64::from(self.self_contained) << 34),
                HEADER_LEN_LZ4,
            )
        } else {
            (p | (u64::from(self.self_contained) << 17), HEADER_LEN_PLAIN)
        };
        let bytes = v.to_le_bytes();
        let head = bytes.get(..n).unwrap_or(&[]);
        out.extend_from_slice(head);
        let crc = crc24(head).to_le_bytes();
        out.extend_from_slice(crc.get(..CRC24_LEN).unwrap_or(&[]));
    }
}

/// Appends one segment carrying `payload` (at most [`MAX_PAYLOAD`] bytes). With `lz4`, the
/// payload is compressed when that makes it smaller, else stored with uncompressed length 0.
pub fn write_segment(payload: &[u8], self_contained: bool, lz4: bool, out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    if lz4 && !payload.is_empty() {
        let mut z = Vec::new();
        compress_lz4_block(payload, &mut z);
        if z.len() < payload.len() {
            SegmentHeader {
                payload_len: z.len() as u32,
                uncompressed_len: payload.len() as u32,
                self_contained,
                lz4,
            }
            .encode(out);
            out.extend_from_slice(&z);
            out.extend_from_slice(&crc32(&z).to_le_bytes());
            return;
        }
    }
    SegmentHeader {
        payload_len: payload.len() as u32,
        uncompressed_len: 0,
        self_contained,
        lz4,
    }
    .encode(out);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32(payload).to_le_bytes());
}

/// Appends `payload` as segments: one self-contained segment when it fits (it must then hold
/// whole envelopes), else a run of non-self-contained segments (it must then be one envelope).
pub fn write_segments(payload: &[u8], lz4: bool, out: &mut Vec<u8>) {
    if payload.len() <= MAX_PAYLOAD as usize {
        write_segment(payload, true, lz4, out);
    } else {
        for part in payload.chunks(MAX_PAYLOAD as usize) {
            write_segment(part, false, lz4, out);
        }
    }
}

/// Re-frames a self-contained segment after dropping one envelope: `payload` is the segment's
/// (decompressed) payload and `drop` the byte range of the envelope to remove. Appends the new
/// segment to `out`, or nothing when no envelope remains. Errors when the range is outside the
/// payload.
pub fn reframe_without(
    payload: &[u8],
    drop: core::ops::Range<usize>,
    lz4: bool,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let (before, after) = match (payload.get(..drop.start), payload.get(drop.end..)) {
        (Some(b), Some(a)) if drop.start <= drop.end => (b, a),
        _ => {
            return Err(CodecError::Malformed(
                "envelope range outside the segment payload",
            ))
        }
    };
    if before.is_empty() && after.is_empty() {
        return Ok(());
    }
    let mut p = Vec::with_capacity(before.len() + after.len());
    p.extend_from_slice(before);
    p.extend_from_slice(after);
    write_segment(&p, true, lz4, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_first_client_segment_of_py_v5_plain() {
        let h = SegmentHeader::decode(&[0x21, 0x00, 0x02, 0x21, 0x62, 0x8d], false).unwrap();
        assert_eq!(h.payload_len, 33);
        assert!(h.self_contained);
        assert!(!h.is_compressed());
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, [0x21, 0x00, 0x02, 0x21, 0x62, 0x8d]);
    }

    #[test]
    fn bad_crc24_is_an_error() {
        assert!(matches!(
            SegmentHeader::decode(&[0x21, 0x00, 0x02, 0x21, 0x62, 0x8e], false),
            Err(CodecError::Crc24Mismatch { .. })
        ));
        // One payload-length bit flipped.
        assert!(matches!(
            SegmentHeader::decode(&[0x20, 0x00, 0x02, 0x21, 0x62, 0x8d], false),
            Err(CodecError::Crc24Mismatch { .. })
        ));
    }

    #[test]
    fn lz4_header_round_trip() {
        for (p, u, sc) in [
            (1, 0, true),
            (MAX_PAYLOAD, MAX_PAYLOAD, false),
            (100, 4000, true),
        ] {
            let h = SegmentHeader {
                payload_len: p,
                uncompressed_len: u,
                self_contained: sc,
                lz4: true,
            };
            let mut out = Vec::new();
            h.encode(&mut out);
            assert_eq!(out.len(), 8);
            assert_eq!(SegmentHeader::decode(&out, true).unwrap(), h);
        }
    }

    #[test]
    fn write_segment_stores_incompressible_payloads() {
        let mut out = Vec::new();
        write_segment(&[1, 2, 3], true, true, &mut out);
        let h = SegmentHeader::decode(&out, true).unwrap();
        assert_eq!((h.payload_len, h.uncompressed_len), (3, 0));
        assert_eq!(out.len(), 8 + 3 + 4);
        let mut out = Vec::new();
        write_segment(&[7u8; 1000], true, true, &mut out);
        let h = SegmentHeader::decode(&out, true).unwrap();
        assert!(h.is_compressed());
        assert_eq!(h.uncompressed_len, 1000);
    }

    #[test]
    fn reframe_drops_the_range() {
        let payload: Vec<u8> = (0u8..30).collect();
        let mut out = Vec::new();
        reframe_without(&payload, 10..20, false, &mut out).unwrap();
        let h = SegmentHeader::decode(&out, false).unwrap();
        assert_eq!(h.payload_len, 20);
        assert_eq!(out.get(6..16), payload.get(..10));
        assert_eq!(out.get(16..26), payload.get(20..30));
        let mut out = Vec::new();
        reframe_without(&payload, 0..30, false, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(reframe_without(&payload, 20..40, false, &mut out).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 20..10;
        assert!(reframe_without(&payload, bad, false, &mut out).is_err());
    }
}
