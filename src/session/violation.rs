//! Why the session ends a connection: the peer that sent the offending bytes and what was
//! wrong, worded for NGINX's error log and the audit trail.

use core::fmt;

use crate::codec::{CodecError, Direction, Opcode};

/// Why a connection is ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which peer sent the offending bytes.
    pub from: Direction,
    pub fault: Fault,
}

/// What was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The bytes are not a valid CQL stream.
    Codec(CodecError),
    /// A message the connection's state does not allow, e.g. QUERY before authentication.
    Unexpected { opcode: Opcode, state: &'static str },
    /// An AUTH_RESPONSE above the configured cap.
    AuthResponseTooLarge { length: u32, max: u32 },
    /// The upstream asks for something the proxy cannot give.
    Upstream(&'static str),
    /// The client does not present what `cql_auth` requires.
    Identity(&'static str),
    /// A request on a stream id whose earlier request has not been answered.
    StreamInFlight { opcode: Opcode, stream: i16 },
    /// A request on a negative stream id (reserved for the server's events).
    NegativeStream { opcode: Opcode, stream: i16 },
    /// The client failed to log in `cql_max_auth_attempts` times.
    TooManyLogins { attempts: u32 },
    /// The client did not log in within `cql_auth_timeout`.
    AuthTimeout { ms: u64 },
    /// An identity the policy gives no role, refused at login.
    Unbound,
    /// An identity over its connection cap (`cql_limit_conn`), refused at login.
    ConnectionLimit,
}

impl Violation {
    pub(super) fn codec(from: Direction, error: CodecError) -> Self {
        Violation {
            from,
            fault: Fault::Codec(error),
        }
    }

    /// Whether this is a client probing for a protocol version, as drivers do when they
    /// negotiate (v1, v2, v6 or the DSE versions 0x41 and 0x42), rather than a stream that
    /// is not CQL at all.
    pub fn is_version_probe(&self) -> bool {
        matches!(
            self.fault,
            Fault::Codec(CodecError::UnsupportedVersion {
                version: 1 | 2 | 6 | 0x41 | 0x42
            })
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = match self.from {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "upstream",
        };
        match &self.fault {
            Fault::Codec(CodecError::UnsupportedVersion { version }) => write!(
                f,
                "{peer} sent protocol version {version}, which is not CQL v3, v4 or v5"
            ),
            Fault::Codec(error) => write!(f, "{peer} sent an invalid CQL stream: {error}"),
            Fault::Unexpected { opcode, state } => {
                write!(f, "{peer} sent {} {state}", opcode.name())
            }
            Fault::AuthResponseTooLarge { length, max } => write!(
                f,
                "{peer} sent an AUTH_RESPONSE of {length} bytes, above the limit of {max}"
            ),
            Fault::Upstream(what) | Fault::Identity(what) => write!(f, "{what}"),
            Fault::StreamInFlight { opcode, stream } => write!(
                f,
                "{peer} sent {} on stream {stream}, which already has a request in flight",
                opcode.name()
            ),
            Fault::NegativeStream { opcode, stream } => write!(
                f,
                "{peer} sent {} on stream {stream}; negative stream ids are the server's",
                opcode.name()
            ),
            Fault::TooManyLogins { attempts } => write!(
                f,
                "{peer} failed to log in {attempts} times (cql_max_auth_attempts)"
            ),
            Fault::AuthTimeout { ms } => write!(
                f,
                "{peer} did not authenticate within {ms} ms (cql_auth_timeout)"
            ),
            Fault::Unbound => write!(f, "{peer} identity has no role in the policy"),
            Fault::ConnectionLimit => write!(
                f,
                "{peer} identity is over its connection limit (cql_limit_conn)"
            ),
        }
    }
}
