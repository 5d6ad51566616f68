//! Encoders for the messages the proxy writes itself, in the connection's current framing.
//!
//! Everything is appended to a caller's `Vec<u8>`. These run on rare paths (handshake, denials),
//! so a temporary buffer is acceptable when compressing or wrapping into a segment.

use super::compression::{compress_body, Compression};
use super::header::{Flags, Header, Opcode, HEADER_LEN, MAX_VERSION, MIN_VERSION};
use super::messages::{codes, ErrorBody, ErrorExtra};
use super::primitives::write;
use super::segment::write_segments;

/// How envelopes are written on a connection at this moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// Protocol version of the envelopes (3, 4 or 5).
    pub version: u8,
    /// Envelope body compression (v3/v4 after STARTUP). With `segments`, `Lz4` means lz4 segments.
    pub compression: Compression,
    /// v5 segment framing is in use: each write becomes one self-contained segment.
    pub segments: bool,
}

impl Framing {
    /// Plain envelopes of `version`, no compression (before STARTUP, or none negotiated).
    pub fn envelopes(version: u8) -> Self {
        Framing {
            version,
            compression: Compression::None,
            segments: false,
        }
    }

    /// v3/v4 envelopes with body compression.
    pub fn compressed(version: u8, compression: Compression) -> Self {
        Framing {
            version,
            compression,
            segments: false,
        }
    }

    /// v5 segment framing, lz4 segments when `lz4`.
    pub fn v5_segments(lz4: bool) -> Self {
        Framing {
            version: 5,
            compression: if lz4 {
                Compression::Lz4
            } else {
                Compression::None
            },
            segments: true,
        }
    }

    /// Appends one bare envelope (no segment) with `body`; with envelope compression in force the
    /// body is compressed and the COMPRESSION flag set. Use it to put several envelopes in one
    /// segment with [`super::segment::write_segment`].
    pub fn write_envelope(
        &self,
        stream: i16,
        opcode: Opcode,
        flags: u8,
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        let compress = !self.segments && self.version < 5 && self.compression != Compression::None;
        let mut flags = flags & !Flags::COMPRESSION;
        if compress {
            flags |= Flags::COMPRESSION;
        }
        let start = out.len();
        let mut h = Header {
            version: self.version,
            is_response: !opcode.is_request(),
            flags: Flags(flags),
            stream,
            opcode,
            length: 0,
        };
        out.extend_from_slice(&h.to_bytes());
        if compress {
            compress_body(self.compression, body, out);
        } else {
            out.extend_from_slice(body);
        }
        h.length = (out.len() - start - HEADER_LEN) as u32;
        if let Some(dst) = out.get_mut(start..start + HEADER_LEN) {
            dst.copy_from_slice(&h.to_bytes());
        }
    }

    /// Appends a message in this framing: an envelope, wrapped into a segment with v5 segments.
    pub fn write_message(&self, stream: i16, opcode: Opcode, body: &[u8], out: &mut Vec<u8>) {
        if self.segments {
            let mut env = Vec::with_capacity(HEADER_LEN + body.len());
            self.write_envelope(stream, opcode, 0, body, &mut env);
            write_segments(&env, self.compression == Compression::Lz4, out);
        } else {
            self.write_envelope(stream, opcode, 0, body, out);
        }
    }

    /// ERROR with any code and extras.
    pub fn write_error_body(&self, stream: i16, error: &ErrorBody<'_>, out: &mut Vec<u8>) {
        let mut b = Vec::with_capacity(64 + error.message.len());
        error.encode(self.version, &mut b);
        self.write_message(stream, Opcode::Error, &b, out);
    }

    /// ERROR with a code that has no extras (0x0000, 0x000A, 0x0100, 0x1001-0x1003, 0x2000-0x2300...).
    pub fn write_error(&self, stream: i16, code: i32, message: &str, out: &mut Vec<u8>) {
        self.write_error_body(
            stream,
            &ErrorBody {
                code,
                message,
                extra: ErrorExtra::None,
            },
            out,
        );
    }

    /// ERROR 0x2500 Unprepared with the unknown id, which makes drivers prepare again.
    pub fn write_unprepared(&self, stream: i16, id: &[u8], message: &str, out: &mut Vec<u8>) {
        self.write_error_body(
            stream,
            &ErrorBody {
                code: codes::UNPREPARED,
                message,
                extra: ErrorExtra::Unprepared { id },
            },
            out,
        );
    }

    /// AUTHENTICATE naming the authenticator class.
    pub fn write_authenticate(&self, stream: i16, class: &str, out: &mut Vec<u8>) {
        let mut b = Vec::with_capacity(2 + class.len());
        write::string(&mut b, class);
        self.write_message(stream, Opcode::Authenticate, &b, out);
    }

    /// AUTH_SUCCESS with a null token.
    pub fn write_auth_success(&self, stream: i16, out: &mut Vec<u8>) {
        self.write_message(stream, Opcode::AuthSuccess, &(-1i32).to_be_bytes(), out);
    }

    /// READY.
    pub fn write_ready(&self, stream: i16, out: &mut Vec<u8>) {
        self.write_message(stream, Opcode::Ready, &[], out);
    }

    /// AUTH_RESPONSE carrying a SASL PLAIN token `\0user\0password`.
    pub fn write_auth_response_plain(
        &self,
        stream: i16,
        user: &str,
        password: &str,
        out: &mut Vec<u8>,
    ) {
        let mut tok = Vec::with_capacity(2 + user.len() + password.len());
        tok.push(0);
        tok.extend_from_slice(user.as_bytes());
        tok.push(0);
        tok.extend_from_slice(password.as_bytes());
        let mut b = Vec::with_capacity(4 + tok.len());
        write::bytes(&mut b, Some(&tok));
        self.write_message(stream, Opcode::AuthResponse, &b, out);
    }

    /// STARTUP with the given options.
    pub fn write_startup(&self, stream: i16, options: &[(&str, &str)], out: &mut Vec<u8>) {
        let mut b = Vec::new();
        write::string_map(&mut b, options);
        self.write_message(stream, Opcode::Startup, &b, out);
    }

    /// OPTIONS.
    pub fn write_options(&self, stream: i16, out: &mut Vec<u8>) {
        self.write_message(stream, Opcode::Options, &[], out);
    }
}

/// The message of the protocol error answering an unsupported version.
pub fn unsupported_version_message(requested: u8) -> String {
    format!(
        "Invalid or unsupported protocol version ({requested}); supported versions are (3/v3, 4/v4, 5/v5)"
    )
}

/// Appends the answer to an envelope of an unsupported `requested` version: ERROR 0x000A on
/// stream 0, as a plain envelope. Its header carries the nearest supported version (v5 for
/// newer clients, v3 for older ones) so that the client can read it and step down.
pub fn write_unsupported_version(requested: u8, out: &mut Vec<u8>) {
    let version = requested.clamp(MIN_VERSION, MAX_VERSION);
    Framing::envelopes(version).write_error(
        0,
        codes::PROTOCOL_ERROR,
        &unsupported_version_message(requested),
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::messages::{AuthToken, Authenticate, Message, ResultBody, SaslPlain};
    use crate::codec::reader::{Event, FrameReader};
    use crate::codec::segment::{reframe_without, write_segment};
    use crate::codec::Direction;

    /// Reads back what was written, capturing every body.
    fn read_back(f: &Framing, bytes: &[u8], dir: Direction) -> Vec<(Header, Vec<u8>)> {
        let mut r = FrameReader::new(dir, 1 << 20);
        r.set_compression(if f.segments {
            Compression::None
        } else {
            f.compression
        });
        if f.segments {
            r.start_segments(f.compression == Compression::Lz4);
        }
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            let (n, ev) = r.next(&bytes[off..]).unwrap();
            off += n;
            match ev {
                Event::NeedMore => break,
                Event::Header(_) => r.capture_body(),
                Event::Frame { header, body } => out.push((header, body.unwrap().to_vec())),
                Event::SegmentEnd { .. } => {}
            }
        }
        assert_eq!(off, bytes.len());
        out
    }

    fn framings() -> Vec<Framing> {
        vec![
            Framing::envelopes(3),
            Framing::envelopes(4),
            Framing::envelopes(5),
            Framing::compressed(4, Compression::Lz4),
            Framing::compressed(4, Compression::Snappy),
            Framing::v5_segments(false),
            Framing::v5_segments(true),
        ]
    }

    #[test]
    fn server_messages_round_trip_in_every_framing() {
        let long_msg =
            "User alice has no MODIFY permission on <table demo.users> or any of its parents "
                .repeat(4);
        for f in framings() {
            let mut out = Vec::new();
            f.write_error(7, codes::UNAUTHORIZED, &long_msg, &mut out);
            f.write_error(8, codes::AUTHENTICATION_ERROR, "bad token", &mut out);
            f.write_error(0, codes::PROTOCOL_ERROR, "nope", &mut out);
            f.write_unprepared(9, &[0xab; 16], "Unknown prepared id", &mut out);
            f.write_authenticate(
                1,
                "org.apache.cassandra.auth.PasswordAuthenticator",
                &mut out,
            );
            f.write_auth_success(2, &mut out);
            f.write_ready(3, &mut out);
            let frames = read_back(&f, &out, Direction::ServerToClient);
            assert_eq!(frames.len(), 7, "{f:?}");
            for (h, _) in &frames {
                assert_eq!(h.version, f.version);
                assert!(h.is_response);
            }
            let msgs: Vec<Message<'_>> = frames
                .iter()
                .map(|(h, b)| Message::decode(h, b).unwrap().1)
                .collect();
            match msgs[0] {
                Message::Error(e) => assert_eq!((e.code, e.message), (0x2100, long_msg.as_str())),
                ref m => panic!("{m:?}"),
            }
            assert_eq!(frames[0].0.stream, 7);
            match msgs[1] {
                Message::Error(e) => assert_eq!(e.code, 0x0100),
                ref m => panic!("{m:?}"),
            }
            match msgs[3] {
                Message::Error(e) => {
                    assert_eq!(e.extra, ErrorExtra::Unprepared { id: &[0xab; 16] })
                }
                ref m => panic!("{m:?}"),
            }
            assert_eq!(
                msgs[4],
                Message::Authenticate(Authenticate {
                    authenticator: "org.apache.cassandra.auth.PasswordAuthenticator"
                })
            );
            assert_eq!(msgs[5], Message::AuthSuccess(AuthToken { token: None }));
            assert_eq!(msgs[6], Message::Ready);
            let _ = ResultBody::Void;
        }
    }

    #[test]
    fn client_messages_round_trip_in_every_framing() {
        for f in framings() {
            let mut out = Vec::new();
            f.write_options(0, &mut out);
            f.write_startup(
                1,
                &[("CQL_VERSION", "3.4.5"), ("COMPRESSION", "lz4")],
                &mut out,
            );
            f.write_auth_response_plain(2, "svc_proxy", "s3cret", &mut out);
            let frames = read_back(&f, &out, Direction::ClientToServer);
            assert_eq!(frames.len(), 3);
            assert_eq!(
                Message::decode(&frames[0].0, &frames[0].1).unwrap().1,
                Message::Options
            );
            match Message::decode(&frames[1].0, &frames[1].1).unwrap().1 {
                Message::Startup(s) => assert_eq!(s.compression(), Some("lz4")),
                m => panic!("{m:?}"),
            }
            match Message::decode(&frames[2].0, &frames[2].1).unwrap().1 {
                Message::AuthResponse(t) => {
                    let p = SaslPlain::parse(t.token.unwrap()).unwrap();
                    assert_eq!((p.username, p.password), ("svc_proxy", "s3cret"));
                }
                m => panic!("{m:?}"),
            }
        }
    }

    #[test]
    fn unsupported_version_reply() {
        let mut out = Vec::new();
        write_unsupported_version(66, &mut out);
        let f = Framing::envelopes(5);
        let frames = read_back(&f, &out, Direction::ServerToClient);
        assert_eq!(frames[0].0.stream, 0);
        match Message::decode(&frames[0].0, &frames[0].1).unwrap().1 {
            Message::Error(e) => {
                assert_eq!(e.code, 0x000A);
                assert_eq!(
                    e.message,
                    "Invalid or unsupported protocol version (66); supported versions are (3/v3, 4/v4, 5/v5)"
                );
            }
            m => panic!("{m:?}"),
        }
        let mut out = Vec::new();
        write_unsupported_version(2, &mut out);
        assert_eq!(out[0], 0x83);
    }

    #[test]
    fn several_envelopes_in_one_segment_and_reframing() {
        for lz4 in [false, true] {
            let f = Framing::v5_segments(lz4);
            let mut payload = Vec::new();
            f.write_envelope(1, Opcode::Query, 0, &[1u8; 100], &mut payload);
            let cut = payload.len();
            f.write_envelope(2, Opcode::Query, 0, &[2u8; 100], &mut payload);
            let cut2 = payload.len();
            f.write_envelope(3, Opcode::Query, 0, &[3u8; 100], &mut payload);
            let mut seg = Vec::new();
            write_segment(&payload, true, lz4, &mut seg);
            let frames = read_back(&f, &seg, Direction::ClientToServer);
            assert_eq!(
                frames.iter().map(|x| x.0.stream).collect::<Vec<_>>(),
                [1, 2, 3]
            );
            // Drop stream 2.
            let mut re = Vec::new();
            reframe_without(&payload, cut..cut2, lz4, &mut re).unwrap();
            let frames = read_back(&f, &re, Direction::ClientToServer);
            assert_eq!(
                frames.iter().map(|x| x.0.stream).collect::<Vec<_>>(),
                [1, 3]
            );
            assert_eq!(frames[1].1, [3u8; 100]);
        }
    }

    #[test]
    fn large_message_spans_non_self_contained_segments() {
        let f = Framing::v5_segments(false);
        let msg = "x".repeat(60_000);
        let mut out = Vec::new();
        // A 300 KB body cannot be an ERROR message ([string] is capped), so use STARTUP-sized
        // pieces: three messages, each wrapped in its own segment.
        for s in 0..3 {
            f.write_error(s, codes::SERVER_ERROR, &msg, &mut out);
        }
        assert_eq!(read_back(&f, &out, Direction::ServerToClient).len(), 3);
        let mut big = Vec::new();
        f.write_envelope(4, Opcode::Query, 0, &vec![0u8; 300_000], &mut big);
        let mut segs = Vec::new();
        write_segments(&big, false, &mut segs);
        let frames = read_back(&f, &segs, Direction::ClientToServer);
        assert_eq!(frames[0].1.len(), 300_000);
    }
}
