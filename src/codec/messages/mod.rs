//! Typed, zero-copy decoding of the message bodies the proxy acts on.
//!
//! Each message type has a `decode(body, ..)` constructor that borrows from the body. Bodies
//! must first lose their flag-announced prefixes ([`strip_prefixes`]). Requests must be consumed
//! to their last byte (a request that does not parse exactly is refused); responses are decoded
//! only as far as the proxy needs (rows are never parsed).

pub mod auth;
pub mod error;
pub mod event;
pub mod prefix;
pub mod query;
pub mod result;
pub mod startup;

pub use auth::{AuthChallenge, AuthResponse, AuthSuccess, AuthToken, Authenticate, SaslPlain};
pub use error::{codes, ErrorBody, ErrorExtra, Failures};
pub use event::{EventBody, Register, SchemaChange};
pub use prefix::{strip_prefixes, BodyPrefix};
pub use query::{
    Batch, BatchChild, BatchChildren, BatchStatement, BatchType, Execute, Prepare, Query,
    QueryParams, Values,
};
pub use result::ResultBody;
pub use startup::{decode_empty, Startup, Supported};

use super::error::CodecError;
use super::header::{Header, Opcode};

/// Any decoded message body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Error(ErrorBody<'a>),
    Startup(Startup<'a>),
    Ready,
    Authenticate(Authenticate<'a>),
    Options,
    Supported(Supported<'a>),
    Query(Query<'a>),
    Result(ResultBody<'a>),
    Prepare(Prepare<'a>),
    Execute(Execute<'a>),
    Register(Register<'a>),
    Event(EventBody<'a>),
    Batch(Batch<'a>),
    AuthChallenge(AuthToken<'a>),
    AuthResponse(AuthToken<'a>),
    AuthSuccess(AuthToken<'a>),
}

impl<'a> Message<'a> {
    /// Strips the prefixes and decodes the body of the envelope `header` announced.
    pub fn decode(header: &Header, body: &'a [u8]) -> Result<(BodyPrefix<'a>, Self), CodecError> {
        let (prefix, b) = strip_prefixes(header, body)?;
        let v = header.version;
        let m = match header.opcode {
            Opcode::Error => Message::Error(ErrorBody::decode(b, v)?),
            Opcode::Startup => Message::Startup(Startup::decode(b)?),
            Opcode::Ready => {
                decode_empty(b, "READY")?;
                Message::Ready
            }
            Opcode::Authenticate => Message::Authenticate(Authenticate::decode(b)?),
            Opcode::Options => {
                decode_empty(b, "OPTIONS")?;
                Message::Options
            }
            Opcode::Supported => Message::Supported(Supported::decode(b)?),
            Opcode::Query => Message::Query(Query::decode(b, v)?),
            Opcode::Result => Message::Result(ResultBody::decode(b, v)?),
            Opcode::Prepare => Message::Prepare(Prepare::decode(b, v)?),
            Opcode::Execute => Message::Execute(Execute::decode(b, v)?),
            Opcode::Register => Message::Register(Register::decode(b)?),
            Opcode::Event => Message::Event(EventBody::decode(b)?),
            Opcode::Batch => Message::Batch(Batch::decode(b, v)?),
            Opcode::AuthChallenge => Message::AuthChallenge(AuthToken::decode(b)?),
            Opcode::AuthResponse => Message::AuthResponse(AuthToken::decode(b)?),
            Opcode::AuthSuccess => Message::AuthSuccess(AuthToken::decode(b)?),
        };
        Ok((prefix, m))
    }
}
