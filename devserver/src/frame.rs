//! Envelopes (frames), v4 body compression and v5 segment framing.

/// Largest envelope body accepted (Cassandra's native_transport_max_frame_size default).
pub const MAX_BODY: usize = 256 * 1024 * 1024;
/// Largest segment payload (2^17 - 1).
pub const MAX_SEGMENT_PAYLOAD: usize = 131_071;

pub const OP_ERROR: u8 = 0x00;
pub const OP_STARTUP: u8 = 0x01;
pub const OP_READY: u8 = 0x02;
pub const OP_AUTHENTICATE: u8 = 0x03;
pub const OP_OPTIONS: u8 = 0x05;
pub const OP_SUPPORTED: u8 = 0x06;
pub const OP_QUERY: u8 = 0x07;
pub const OP_RESULT: u8 = 0x08;
pub const OP_PREPARE: u8 = 0x09;
pub const OP_EXECUTE: u8 = 0x0A;
pub const OP_REGISTER: u8 = 0x0B;
pub const OP_EVENT: u8 = 0x0C;
pub const OP_BATCH: u8 = 0x0D;
pub const OP_AUTH_CHALLENGE: u8 = 0x0E;
pub const OP_AUTH_RESPONSE: u8 = 0x0F;
pub const OP_AUTH_SUCCESS: u8 = 0x10;

pub const FLAG_COMPRESSION: u8 = 0x01;
pub const FLAG_TRACING: u8 = 0x02;

/// One decoded envelope header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Full version byte (direction bit included).
    pub version_byte: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub length: usize,
}

impl Header {
    pub fn version(&self) -> u8 {
        self.version_byte & 0x7f
    }
}

/// Result of looking at the start of a byte buffer for an envelope.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Incomplete,
    /// One item and the number of bytes it used.
    Done(T, usize),
}

/// Reasons an envelope cannot be accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A version this server does not speak (the raw version byte).
    UnsupportedVersion(u8),
    /// Anything else: the message for an ERROR 0x000A.
    Protocol(String),
}

/// Reads one legacy envelope (9-byte header for v3+) from `buf`.
pub fn parse_envelope(buf: &[u8]) -> Result<Parsed<(Header, &[u8])>, FrameError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    let vb = buf[0];
    let v = vb & 0x7f;
    if !(3..=5).contains(&v) {
        return Err(FrameError::UnsupportedVersion(vb));
    }
    if vb & 0x80 != 0 {
        return Err(FrameError::Protocol(
            "Invalid frame: the direction bit is set on a request".into(),
        ));
    }
    if buf.len() < 9 {
        return Ok(Parsed::Incomplete);
    }
    let flags = buf[1];
    let stream = i16::from_be_bytes([buf[2], buf[3]]);
    let opcode = buf[4];
    let length = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
    if length > MAX_BODY {
        return Err(FrameError::Protocol(format!(
            "Request is too big: length {} exceeds maximum allowed length {}.",
            length, MAX_BODY
        )));
    }
    if buf.len() < 9 + length {
        return Ok(Parsed::Incomplete);
    }
    let h = Header {
        version_byte: vb,
        flags,
        stream,
        opcode,
        length,
    };
    Ok(Parsed::Done((h, &buf[9..9 + length]), 9 + length))
}

/// Writes an envelope (response direction bit set).
pub fn encode_envelope(version: u8, flags: u8, stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + body.len());
    out.push(0x80 | version);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(opcode);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Body compression negotiated in STARTUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Snappy,
}

/// v4 body compression: lz4 is a 4-byte big-endian uncompressed length and a raw block.
pub fn compress_body(c: Compression, body: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => body.to_vec(),
        Compression::Lz4 => {
            let mut out = Vec::with_capacity(4 + body.len() / 2);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&lz4_flex::block::compress(body));
            out
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(body)
            .unwrap_or_else(|_| body.to_vec()),
    }
}

pub fn decompress_body(c: Compression, body: &[u8]) -> Result<Vec<u8>, String> {
    match c {
        Compression::None => Ok(body.to_vec()),
        Compression::Lz4 => {
            if body.len() < 4 {
                return Err("lz4 body shorter than its length prefix".into());
            }
            let n = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
            if n > MAX_BODY {
                return Err("lz4 uncompressed length too large".into());
            }
            if n == 0 {
                return Ok(Vec::new());
            }
            lz4_flex::block::decompress(&body[4..], n).map_err(|e| format!("lz4: {e}"))
        }
        Compression::Snappy => {
            let n = snap::raw::decompress_len(body).map_err(|e| format!("snappy: {e}"))?;
            if n > MAX_BODY {
                return Err("snappy uncompressed length too large".into());
            }
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("snappy: {e}"))
        }
    }
}

// ---------------------------------------------------------------- v5 segments

const CRC24_INIT: u32 = 0x875060;
const CRC24_POLY: u32 = 0x1974F0B;
const CRC32_SEED: [u8; 4] = [0xFA, 0x2D, 0x55, 0xCA];

/// CRC24 over the header bytes in wire order.
pub fn crc24(bytes: &[u8]) -> u32 {
    let mut crc = CRC24_INIT;
    for &b in bytes {
        crc ^= (b as u32) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= CRC24_POLY;
            }
        }
    }
    crc & 0xFF_FFFF
}

/// zlib CRC32 over FA 2D 55 CA followed by the payload.
pub fn crc32(payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&CRC32_SEED);
    h.update(payload);
    h.finalize()
}

/// One decoded segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Segment {
    pub self_contained: bool,
    /// Uncompressed payload.
    pub payload: Vec<u8>,
}

/// Reads one segment; `lz4` selects the 5-byte compressed header.
pub fn parse_segment(buf: &[u8], lz4: bool) -> Result<Parsed<Segment>, String> {
    let hlen = if lz4 { 5 } else { 3 };
    if buf.len() < hlen + 3 {
        return Ok(Parsed::Incomplete);
    }
    let mut h: u64 = 0;
    for (i, b) in buf[..hlen].iter().enumerate() {
        h |= (*b as u64) << (8 * i);
    }
    let want = crc24(&buf[..hlen]);
    let got = buf[hlen] as u32 | (buf[hlen + 1] as u32) << 8 | (buf[hlen + 2] as u32) << 16;
    if want != got {
        return Err(format!(
            "Segment header CRC mismatch: computed {want:06x}, received {got:06x}"
        ));
    }
    let plen = (h & 0x1FFFF) as usize;
    let (ulen, sc) = if lz4 {
        (((h >> 17) & 0x1FFFF) as usize, (h >> 34) & 1 == 1)
    } else {
        (0, (h >> 17) & 1 == 1)
    };
    let total = hlen + 3 + plen + 4;
    if buf.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let payload = &buf[hlen + 3..hlen + 3 + plen];
    let c = &buf[hlen + 3 + plen..total];
    let got32 = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    let want32 = crc32(payload);
    if got32 != want32 {
        return Err(format!(
            "Segment payload CRC mismatch: computed {want32:08x}, received {got32:08x}"
        ));
    }
    let payload = if lz4 && ulen != 0 {
        lz4_flex::block::decompress(payload, ulen).map_err(|e| format!("lz4 segment: {e}"))?
    } else {
        payload.to_vec()
    };
    Ok(Parsed::Done(
        Segment {
            self_contained: sc,
            payload,
        },
        total,
    ))
}

/// Writes one segment holding `payload` (at most 2^17-1 bytes).
pub fn encode_segment(out: &mut Vec<u8>, payload: &[u8], self_contained: bool, lz4: bool) {
    debug_assert!(payload.len() <= MAX_SEGMENT_PAYLOAD);
    if lz4 {
        let compressed = lz4_flex::block::compress(payload);
        let (wire, ulen): (&[u8], usize) = if compressed.len() < payload.len() {
            (&compressed, payload.len())
        } else {
            (payload, 0)
        };
        let h: u64 = wire.len() as u64 | (ulen as u64) << 17 | (self_contained as u64) << 34;
        let hb = &h.to_le_bytes()[..5];
        out.extend_from_slice(hb);
        out.extend_from_slice(&crc24(hb).to_le_bytes()[..3]);
        out.extend_from_slice(wire);
        out.extend_from_slice(&crc32(wire).to_le_bytes());
    } else {
        let h: u32 = payload.len() as u32 | (self_contained as u32) << 17;
        let hb = &h.to_le_bytes()[..3];
        out.extend_from_slice(hb);
        out.extend_from_slice(&crc24(hb).to_le_bytes()[..3]);
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc32(payload).to_le_bytes());
    }
}

/// Packs whole envelopes into segments: small ones share self-contained
/// segments, an envelope larger than a segment spans non-self-contained ones.
pub fn encode_segments(out: &mut Vec<u8>, envelopes: &[Vec<u8>], lz4: bool) {
    // lz4 caps the uncompressed length at 17 bits as well.
    let max = MAX_SEGMENT_PAYLOAD;
    let mut pending: Vec<u8> = Vec::new();
    for env in envelopes {
        if env.len() > max {
            if !pending.is_empty() {
                encode_segment(out, &pending, true, lz4);
                pending.clear();
            }
            for chunk in env.chunks(max) {
                encode_segment(out, chunk, false, lz4);
            }
            continue;
        }
        if pending.len() + env.len() > max {
            encode_segment(out, &pending, true, lz4);
            pending.clear();
        }
        pending.extend_from_slice(env);
    }
    if !pending.is_empty() {
        encode_segment(out, &pending, true, lz4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_matches_capture_example() {
        // py-v5-plain c2s offset 109: 21 00 02 | 21 62 8d
        assert_eq!(crc24(&[0x21, 0x00, 0x02]), 0x8d6221);
    }

    #[test]
    fn segments_roundtrip_plain_and_lz4() {
        for lz4 in [false, true] {
            let small = encode_envelope(5, 0, 1, OP_READY, &[]);
            let big = encode_envelope(5, 0, 2, OP_RESULT, &vec![7u8; 300_000]);
            let mut out = Vec::new();
            encode_segments(&mut out, &[small.clone(), big.clone(), small.clone()], lz4);
            let mut pos = 0;
            let mut segs = Vec::new();
            while pos < out.len() {
                match parse_segment(&out[pos..], lz4).unwrap() {
                    Parsed::Done(s, n) => {
                        pos += n;
                        segs.push(s);
                    }
                    Parsed::Incomplete => panic!("incomplete"),
                }
            }
            assert_eq!(segs.len(), 1 + 3 + 1);
            assert!(segs[0].self_contained && segs[4].self_contained);
            assert!(!segs[1].self_contained && !segs[3].self_contained);
            let joined: Vec<u8> = segs[1..4].iter().flat_map(|s| s.payload.clone()).collect();
            assert_eq!(joined, big);
        }
    }

    #[test]
    fn corrupt_segment_is_rejected() {
        let mut out = Vec::new();
        encode_segment(&mut out, b"hello", true, false);
        let last = out.len() - 1;
        out[last] ^= 1;
        assert!(parse_segment(&out, false).is_err());
        let mut out2 = Vec::new();
        encode_segment(&mut out2, b"hello", true, false);
        out2[0] ^= 1;
        assert!(parse_segment(&out2, false).is_err());
    }

    #[test]
    fn v4_compression_roundtrip() {
        for c in [Compression::Lz4, Compression::Snappy] {
            let body = b"some body some body some body".repeat(10);
            let z = compress_body(c, &body);
            assert_eq!(decompress_body(c, &z).unwrap(), body);
            assert_eq!(decompress_body(c, &compress_body(c, &[])).unwrap(), b"");
        }
        assert_eq!(compress_body(Compression::Lz4, &[])[..4], [0, 0, 0, 0]);
        assert!(decompress_body(Compression::Lz4, &[0, 0, 0]).is_err());
        assert!(decompress_body(Compression::Snappy, &[0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn envelope_versions() {
        assert_eq!(
            parse_envelope(&[0x42, 0, 0, 0, 5, 0, 0, 0, 0]),
            Err(FrameError::UnsupportedVersion(0x42))
        );
        assert_eq!(parse_envelope(&[0x04, 0, 0]), Ok(Parsed::Incomplete));
        assert!(matches!(
            parse_envelope(&[0x04, 0, 0, 1, 5, 0, 0, 0, 0]),
            Ok(Parsed::Done(_, 9))
        ));
    }

    fn capture(session: &str, file: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/captures")
            .join(session)
            .join(file);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Walks a recorded v5 stream: legacy envelopes up to the handshake switch, then segments.
    fn walk_v5(session: &str, file: &str, lz4: bool, switch_after: u8) -> (usize, usize) {
        let data = capture(session, file);
        let mut pos = 0;
        loop {
            match parse_envelope_any(&data[pos..]) {
                Some((op, n)) => {
                    pos += n;
                    if op == switch_after {
                        break;
                    }
                }
                None => panic!("no handshake in {session}/{file}"),
            }
        }
        let (mut segs, mut envs) = (0, 0);
        let mut partial = Vec::new();
        while pos < data.len() {
            let Parsed::Done(seg, n) = parse_segment(&data[pos..], lz4).unwrap() else {
                panic!("truncated segment in {session}/{file} at {pos}")
            };
            pos += n;
            segs += 1;
            partial.extend_from_slice(&seg.payload);
            let mut p = 0;
            while let Some((_, n)) = parse_envelope_any(&partial[p..]) {
                p += n;
                envs += 1;
            }
            partial.drain(..p);
        }
        assert!(partial.is_empty());
        (segs, envs)
    }

    /// Envelope parsing for both directions (the server's direction bit is set).
    fn parse_envelope_any(b: &[u8]) -> Option<(u8, usize)> {
        if b.len() < 9 {
            return None;
        }
        let n = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) as usize;
        (b.len() >= 9 + n).then_some((b[4], 9 + n))
    }

    #[test]
    fn capture_v5_segments_check() {
        // client: segments start after STARTUP; server: after AUTHENTICATE.
        let (s, e) = walk_v5("py-v5-plain", "conn-0.c2s.bin", false, OP_STARTUP);
        assert!(s > 0 && e >= s);
        let (s, e) = walk_v5("py-v5-plain", "conn-0.s2c.bin", false, OP_AUTHENTICATE);
        assert!(s > 0 && e > 0);
        for f in [
            "conn-0.c2s.bin",
            "conn-0.s2c.bin",
            "conn-1.c2s.bin",
            "conn-1.s2c.bin",
        ] {
            let switch = if f.contains("c2s") {
                OP_STARTUP
            } else {
                OP_AUTHENTICATE
            };
            walk_v5("py-v5-lz4", f, true, switch);
            walk_v5("big-result-v5", f, false, switch);
        }
    }

    #[test]
    fn capture_v4_compressed_bodies_decode() {
        for (session, c) in [
            ("py-v4-lz4", Compression::Lz4),
            ("py-v4-snappy", Compression::Snappy),
        ] {
            for f in [
                "conn-0.c2s.bin",
                "conn-0.s2c.bin",
                "conn-1.c2s.bin",
                "conn-1.s2c.bin",
            ] {
                let data = capture(session, f);
                let mut pos = 0;
                let mut compressed = 0;
                while pos < data.len() {
                    let (_, n) = parse_envelope_any(&data[pos..]).expect("whole envelope");
                    if data[pos + 1] & FLAG_COMPRESSION != 0 {
                        decompress_body(c, &data[pos + 9..pos + n]).expect("body decompresses");
                        compressed += 1;
                    }
                    pos += n;
                }
                assert!(compressed > 0, "{session}/{f}");
            }
        }
    }
}
