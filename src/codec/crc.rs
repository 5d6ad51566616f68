//! The two checksums of v5 segment framing.
//!
//! * CRC24 over the segment header bytes in wire order: init 0x875060, polynomial 0x1974F0B,
//!   stored as 3 bytes little-endian.
//! * CRC32 (zlib) over the bytes `FA 2D 55 CA` followed by the payload, stored as 4 bytes
//!   little-endian. Computed with `crc32fast` (SIMD), incrementally as the payload streams by.

const CRC24_INIT: u32 = 0x0087_5060;
const CRC24_POLY: u32 = 0x0197_4F0B;

/// The bytes every segment payload CRC32 starts with.
pub const CRC32_SEED: [u8; 4] = [0xFA, 0x2D, 0x55, 0xCA];

/// CRC24 of a segment header (3 or 5 bytes, in wire order).
pub fn crc24(bytes: &[u8]) -> u32 {
    let mut crc = CRC24_INIT;
    for &b in bytes {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// An incremental payload CRC32, already seeded.
#[derive(Clone)]
pub struct PayloadCrc(crc32fast::Hasher);

impl PayloadCrc {
    pub fn new() -> Self {
        let mut h = crc32fast::Hasher::new();
        h.update(&CRC32_SEED);
        PayloadCrc(h)
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

impl Default for PayloadCrc {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC32 of a whole segment payload.
pub fn crc32(payload: &[u8]) -> u32 {
    let mut c = PayloadCrc::new();
    c.update(payload);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_of_the_first_client_segment_in_py_v5_plain() {
        // `21 00 02 | 21 62 8d`: header of a 33-byte self-contained segment.
        assert_eq!(crc24(&[0x21, 0x00, 0x02]), 0x8d6221);
    }

    #[test]
    fn crc32_of_the_first_client_segment_in_py_v5_plain() {
        // The AUTH_RESPONSE envelope (v5, stream 2) carrying `\0cassandra\0cassandra`.
        let mut payload = vec![0x05, 0x00, 0x00, 0x02, 0x0f, 0x00, 0x00, 0x00, 0x18];
        payload.extend_from_slice(&20u32.to_be_bytes());
        payload.extend_from_slice(b"\0cassandra\0cassandra");
        assert_eq!(payload.len(), 33);
        assert_eq!(
            crc32(&payload),
            u32::from_le_bytes([0xc5, 0x9c, 0x7a, 0x7e])
        );
        // A plain CRC32 does not match: the seed matters.
        assert_ne!(crc32fast::hash(&payload), crc32(&payload));
    }

    #[test]
    fn incremental_equals_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut c = PayloadCrc::new();
        for part in data.chunks(13) {
            c.update(part);
        }
        assert_eq!(c.finish(), crc32(&data));
    }
}
