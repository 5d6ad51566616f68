//! The 9-byte envelope header shared by protocol v3, v4 and v5.
//!
//! ```text
//! 0         8        16                32                                72
//! +---------+--------+--------+--------+--------+--------+--------+--------+
//! | version | flags  |     stream      | opcode |            length          |
//! +---------+--------+--------+--------+--------+--------+--------+--------+
//! ```
//! The high bit of `version` is the direction (set on responses).

use super::direction::Direction;
use super::error::CodecError;

/// Length of an envelope header in v3, v4 and v5.
pub const HEADER_LEN: usize = 9;
/// Lowest protocol version the codec speaks.
pub const MIN_VERSION: u8 = 3;
/// Highest protocol version the codec speaks.
pub const MAX_VERSION: u8 = 5;
/// The direction bit of the version byte.
pub const RESPONSE_BIT: u8 = 0x80;

/// Envelope flags (second header byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The body is compressed (v3/v4 only).
    pub const COMPRESSION: u8 = 0x01;
    /// Tracing requested (request) or tracing id present (response).
    pub const TRACING: u8 = 0x02;
    /// The body starts with a custom payload (bytes map).
    pub const CUSTOM_PAYLOAD: u8 = 0x04;
    /// The response body starts with a warnings string list.
    pub const WARNING: u8 = 0x08;
    /// The envelope uses a beta protocol version.
    pub const USE_BETA: u8 = 0x10;

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
    pub fn compression(self) -> bool {
        self.has(Self::COMPRESSION)
    }
    pub fn tracing(self) -> bool {
        self.has(Self::TRACING)
    }
    pub fn custom_payload(self) -> bool {
        self.has(Self::CUSTOM_PAYLOAD)
    }
    pub fn warning(self) -> bool {
        self.has(Self::WARNING)
    }
    pub fn use_beta(self) -> bool {
        self.has(Self::USE_BETA)
    }
}

macro_rules! opcodes {
    ($($name:ident = $val:literal, $wire:literal;)*) => {
        /// Every opcode of the native protocol.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Opcode {
            $($name = $val,)*
        }

        impl Opcode {
            /// The opcode for a wire byte, if it is one.
            pub fn from_u8(b: u8) -> Option<Opcode> {
                match b {
                    $($val => Some(Opcode::$name),)*
                    _ => None,
                }
            }
            /// The opcode's name as the specification spells it (`AUTH_RESPONSE`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Opcode::$name => $wire,)*
                }
            }
        }
    };
}

opcodes! {
    Error = 0x00, "ERROR";
    Startup = 0x01, "STARTUP";
    Ready = 0x02, "READY";
    Authenticate = 0x03, "AUTHENTICATE";
    Options = 0x05, "OPTIONS";
    Supported = 0x06, "SUPPORTED";
    Query = 0x07, "QUERY";
    Result = 0x08, "RESULT";
    Prepare = 0x09, "PREPARE";
    Execute = 0x0A, "EXECUTE";
    Register = 0x0B, "REGISTER";
    Event = 0x0C, "EVENT";
    Batch = 0x0D, "BATCH";
    AuthChallenge = 0x0E, "AUTH_CHALLENGE";
    AuthResponse = 0x0F, "AUTH_RESPONSE";
    AuthSuccess = 0x10, "AUTH_SUCCESS";
}

impl Opcode {
    /// Whether a client sends this opcode (as opposed to a server).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Opcode::Startup
                | Opcode::Options
                | Opcode::Query
                | Opcode::Prepare
                | Opcode::Execute
                | Opcode::Register
                | Opcode::Batch
                | Opcode::AuthResponse
        )
    }
}

/// A decoded envelope header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Protocol version, low 7 bits of the first byte (3, 4 or 5).
    pub version: u8,
    /// The direction bit: set on responses and events.
    pub is_response: bool,
    pub flags: Flags,
    pub stream: i16,
    pub opcode: Opcode,
    /// Body length as on the wire (compressed length when compressed).
    pub length: u32,
}

impl Header {
    /// Serialises the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.version | if self.is_response { RESPONSE_BIT } else { 0 };
        b[1] = self.flags.0;
        b[2..4].copy_from_slice(&self.stream.to_be_bytes());
        b[4] = self.opcode as u8;
        b[5..9].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// Checks the first byte of an envelope: supported version and expected direction. Called as soon
/// as the byte arrives so that an unsupported version is answered without waiting for more.
pub fn check_first_byte(b: u8, direction: Direction) -> Result<(), CodecError> {
    let version = b & !RESPONSE_BIT;
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(CodecError::UnsupportedVersion { version });
    }
    if (b & RESPONSE_BIT != 0) != direction.is_response() {
        return Err(CodecError::WrongDirection {
            expected: direction,
        });
    }
    Ok(())
}

/// Parses the 9 header bytes without judging version or direction (for tools and tests that look
/// at traffic of other versions, such as a server's v6 protocol-error reply).
pub fn parse_header_raw(b: &[u8; HEADER_LEN]) -> Result<Header, CodecError> {
    let opcode = Opcode::from_u8(b[4]).ok_or(CodecError::UnknownOpcode(b[4]))?;
    Ok(Header {
        version: b[0] & !RESPONSE_BIT,
        is_response: b[0] & RESPONSE_BIT != 0,
        flags: Flags(b[1]),
        stream: i16::from_be_bytes([b[2], b[3]]),
        opcode,
        length: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
    })
}

/// Parses and validates an envelope header flowing in `direction`.
pub fn parse_header(b: &[u8; HEADER_LEN], direction: Direction) -> Result<Header, CodecError> {
    check_first_byte(b[0], direction)?;
    parse_header_raw(b)
}

/// Parses a header at the start of `input`, if 9 bytes are there.
pub fn parse_header_prefix(
    input: &[u8],
    direction: Direction,
) -> Result<Option<Header>, CodecError> {
    if let Some(first) = input.first() {
        check_first_byte(*first, direction)?;
    }
    match input
        .get(..HEADER_LEN)
        .and_then(|s| <&[u8; HEADER_LEN]>::try_from(s).ok())
    {
        Some(b) => parse_header(b, direction).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_v5_auth_response_header() {
        // py-v5-plain c2s, inside the first segment: v5 request, stream 2, AUTH_RESPONSE, 24 bytes.
        let b = [0x05, 0x00, 0x00, 0x02, 0x0f, 0x00, 0x00, 0x00, 0x18];
        let h = parse_header(&b, Direction::ClientToServer).unwrap();
        assert_eq!(h.version, 5);
        assert!(!h.is_response);
        assert_eq!(h.stream, 2);
        assert_eq!(h.opcode, Opcode::AuthResponse);
        assert_eq!(h.opcode.name(), "AUTH_RESPONSE");
        assert_eq!(h.length, 24);
        assert_eq!(h.to_bytes(), b);
    }

    #[test]
    fn parses_event_stream_minus_one_and_flags() {
        let b = [0x84, 0x09, 0xff, 0xff, 0x0c, 0, 0, 0, 5];
        let h = parse_header(&b, Direction::ServerToClient).unwrap();
        assert_eq!(h.stream, -1);
        assert!(h.flags.compression() && h.flags.warning() && !h.flags.tracing());
        assert_eq!(h.opcode, Opcode::Event);
    }

    #[test]
    fn unsupported_versions_are_refused_with_the_version() {
        for v in [1u8, 2, 6, 0x41, 0x42, 0] {
            let b = [v, 0, 0, 0, 5, 0, 0, 0, 0];
            assert_eq!(
                parse_header(&b, Direction::ClientToServer),
                Err(CodecError::UnsupportedVersion { version: v })
            );
        }
        assert_eq!(
            parse_header_prefix(&[0x42], Direction::ClientToServer),
            Err(CodecError::UnsupportedVersion { version: 0x42 })
        );
        let msg = CodecError::UnsupportedVersion { version: 66 }.to_string();
        assert_eq!(
            msg,
            "Invalid or unsupported protocol version (66); supported versions are (3/v3, 4/v4, 5/v5)"
        );
    }

    #[test]
    fn wrong_direction_and_unknown_opcode() {
        let b = [0x84, 0, 0, 0, 5, 0, 0, 0, 0];
        assert!(matches!(
            parse_header(&b, Direction::ClientToServer),
            Err(CodecError::WrongDirection { .. })
        ));
        let b = [0x04, 0, 0, 0, 0x04, 0, 0, 0, 0];
        assert_eq!(
            parse_header(&b, Direction::ClientToServer),
            Err(CodecError::UnknownOpcode(4))
        );
        for op in 0u8..=0x10 {
            if let Some(o) = Opcode::from_u8(op) {
                assert_eq!(o as u8, op);
            }
        }
    }

    #[test]
    fn raw_parse_accepts_the_v6_beta_reply() {
        let b = [0x86, 0x10, 0, 0, 0, 0, 0, 0, 104];
        let h = parse_header_raw(&b).unwrap();
        assert_eq!(
            (h.version, h.is_response, h.flags.use_beta()),
            (6, true, true)
        );
        assert_eq!(h.opcode, Opcode::Error);
    }
}
