//! Body compression: v4 envelope bodies (lz4 with a 4-byte big-endian length, or raw snappy) and
//! v5 lz4 segment payloads (raw lz4 block, uncompressed length in the segment header).
//!
//! Decompression is bounded: the claimed uncompressed size is checked against a limit before any
//! allocation, and the output must have exactly the claimed size.

use super::error::CodecError;

/// Compression negotiated in STARTUP (`COMPRESSION` option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Snappy,
}

impl Compression {
    /// The algorithm for a STARTUP `COMPRESSION` value (case-insensitive); `None` if unknown.
    pub fn from_startup_option(value: &str) -> Option<Compression> {
        if value.eq_ignore_ascii_case("lz4") {
            Some(Compression::Lz4)
        } else if value.eq_ignore_ascii_case("snappy") {
            Some(Compression::Snappy)
        } else {
            None
        }
    }
}

/// Decompresses a v4 body compressed with `c` into `out` (cleared first), refusing to produce more
/// than `max` bytes.
pub fn decompress_body(
    c: Compression,
    body: &[u8],
    max: u32,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match c {
        Compression::None => Err(CodecError::CompressionNotNegotiated),
        Compression::Lz4 => {
            let (len, block) = match body {
                [a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), rest),
                _ => {
                    return Err(CodecError::Decompression(
                        "lz4 body shorter than its length",
                    ))
                }
            };
            decompress_lz4_block(block, len, max, out)
        }
        Compression::Snappy => {
            let len = snap::raw::decompress_len(body)
                .map_err(|_| CodecError::Decompression("snappy length preamble"))?;
            if len > max as usize {
                return Err(CodecError::DecompressedTooLarge {
                    length: len as u64,
                    max,
                });
            }
            out.clear();
            out.resize(len, 0);
            let n = snap::raw::Decoder::new()
                .decompress(body, out)
                .map_err(|_| CodecError::Decompression("snappy data"))?;
            if n != len {
                return Err(CodecError::Decompression("snappy length mismatch"));
            }
            Ok(())
        }
    }
}

/// Decompresses a raw lz4 block that must expand to exactly `len` bytes (at most `max`).
pub fn decompress_lz4_block(
    block: &[u8],
    len: u32,
    max: u32,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if len > max {
        return Err(CodecError::DecompressedTooLarge {
            length: u64::from(len),
            max,
        });
    }
    out.clear();
    out.resize(len as usize, 0);
    let n = lz4_flex::block::decompress_into(block, out)
        .map_err(|_| CodecError::Decompression("lz4 block"))?;
    if n != len as usize {
        return Err(CodecError::Decompression("lz4 length mismatch"));
    }
    Ok(())
}

/// Compresses `body` for a v4 envelope with `c`, appending to `out`.
pub fn compress_body(c: Compression, body: &[u8], out: &mut Vec<u8>) {
    match c {
        Compression::None => out.extend_from_slice(body),
        Compression::Lz4 => {
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            compress_lz4_block(body, out);
        }
        Compression::Snappy => {
            let start = out.len();
            out.resize(start + snap::raw::max_compress_len(body.len()), 0);
            let n = out
                .get_mut(start..)
                .and_then(|dst| snap::raw::Encoder::new().compress(body, dst).ok())
                .unwrap_or(0);
            out.truncate(start + n);
        }
    }
}

/// Appends the raw lz4 block of `data` to `out`.
pub fn compress_lz4_block(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(
        start + lz4_flex::block::get_maximum_output_size(data.len()),
        0,
    );
    let n = out
        .get_mut(start..)
        .and_then(|dst| lz4_flex::block::compress_into(data, dst).ok())
        .unwrap_or(0);
    out.truncate(start + n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_and_snappy_round_trip() {
        let body: Vec<u8> = b"SELECT * FROM system.local WHERE key='local'"
            .iter()
            .cycle()
            .take(5000)
            .copied()
            .collect();
        for c in [Compression::Lz4, Compression::Snappy] {
            let mut z = Vec::new();
            compress_body(c, &body, &mut z);
            assert!(z.len() < body.len());
            let mut out = Vec::new();
            decompress_body(c, &z, 1 << 20, &mut out).unwrap();
            assert_eq!(out, body);
        }
    }

    #[test]
    fn empty_bodies_as_cassandra_writes_them() {
        let mut out = vec![1, 2, 3];
        decompress_body(Compression::Lz4, &[0, 0, 0, 0, 0], 10, &mut out).unwrap();
        assert!(out.is_empty());
        decompress_body(Compression::Snappy, &[0], 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn decompression_is_bounded_before_allocating() {
        // lz4 claiming 4 GiB.
        let mut out = Vec::new();
        assert_eq!(
            decompress_body(
                Compression::Lz4,
                &[0xff, 0xff, 0xff, 0xff, 0x00],
                1024,
                &mut out
            ),
            Err(CodecError::DecompressedTooLarge {
                length: 0xffff_ffff,
                max: 1024
            })
        );
        assert_eq!(out.capacity(), 0);
        // snappy preamble claiming 2^32-1 (varint ff ff ff ff 0f).
        assert!(matches!(
            decompress_body(
                Compression::Snappy,
                &[0xff, 0xff, 0xff, 0xff, 0x0f],
                1024,
                &mut out
            ),
            Err(CodecError::DecompressedTooLarge { .. }) | Err(CodecError::Decompression(_))
        ));
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let mut out = Vec::new();
        assert!(decompress_body(Compression::Lz4, &[0, 0, 0, 10, 0xf0], 100, &mut out).is_err());
        assert!(decompress_body(Compression::Lz4, &[0, 0], 100, &mut out).is_err());
        assert!(decompress_body(Compression::Snappy, &[10, 0xff, 0xff], 100, &mut out).is_err());
        assert_eq!(
            decompress_body(Compression::None, &[], 100, &mut out),
            Err(CodecError::CompressionNotNegotiated)
        );
        // A block that decompresses to fewer bytes than claimed.
        let mut z = Vec::new();
        compress_lz4_block(b"hello", &mut z);
        assert!(decompress_lz4_block(&z, 6, 100, &mut out).is_err());
        decompress_lz4_block(&z, 5, 100, &mut out).unwrap();
        assert_eq!(out, b"hello");
    }
}
